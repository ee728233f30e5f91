"""The SFT + PPO pipeline (`make demo`, `vlmrl bench learn`) end to end on a tiny model."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from PIL import Image

from vlmrl.cli import learn_table, main
from vlmrl.games import EVAL_SEED_BASE, get_task, make_env
from vlmrl.infra.checkpoint import load_weights
from vlmrl.policy import load_policy
from vlmrl.policy.saving import trainable_tensors
from vlmrl.recipes.config import load_config
from vlmrl.recipes.learn import learn
from vlmrl.recipes.ppo import evaluate_heldout, trained_policy

SFT = ["episodes=4", "epochs=1", "batch_size=4", "eval_examples=2", "max_new_tokens=8", "tensorboard=false"]
RL = [
    "num_envs=2",
    "steps_per_update=4",
    "total_steps=8",
    "max_new_tokens=8",
    "minibatch_size=2",
    "eval_every=0",
    "lora=true",
    "lora_rank=4",
    "lora_alpha=8",
    "lr=1e-3",
    "tensorboard=false",
]


@pytest.fixture(scope="module")
def pipeline(tiny_llava, tmp_path_factory):
    out = tmp_path_factory.mktemp("learn") / "numberline"
    return out, learn("numberline", out, episodes=3, sft_overrides=[f"model={tiny_llava}", *SFT], train_overrides=RL)


def test_the_pipeline_evaluates_every_stage_on_the_same_heldout_deals(pipeline):
    out, summary = pipeline
    assert [stage["stage"] for stage in summary["stages"]] == ["untrained", "sft", "rl"]
    for stage in summary["stages"]:
        assert stage["episodes"] == 3 and 0.0 <= stage["success_rate"] <= 1.0
    assert summary["eval_seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 2] and summary["eval_env_kwargs"] == {}
    assert summary["ceiling"] == 1.0 and summary["paper_rl4vlm"] == pytest.approx(0.894)
    assert summary["env_steps"] == 8
    assert json.loads((out / "summary.json").read_text()) == summary
    assert (out / "sft" / "model" / "config.json").is_file()
    with Image.open(out / "rl" / "curve.png") as curve, Image.open(out / "episode.gif") as gif:
        assert curve.width > 300 and gif.n_frames >= 2


def test_trained_policy_holds_the_last_checkpoint_and_differs_from_the_sft_model(pipeline):
    out, _ = pipeline
    policy, config = trained_policy(out / "rl")
    checkpoint, saved = load_weights(out / "rl")
    assert checkpoint.name == "step-2"
    loaded = trainable_tensors(policy)
    assert set(loaded) == set(saved)
    for stem in saved:
        assert set(loaded[stem]) == set(saved[stem])
        for name, tensor in saved[stem].items():
            assert torch.equal(loaded[stem][name].cpu(), tensor), (stem, name)
    sft_model = load_policy(out / "sft" / "model").eval()
    task = get_task("numberline")
    image, info = make_env("numberline").reset(seed=EVAL_SEED_BASE)
    torch.manual_seed(0)
    samples = sft_model.generate([image], [task.prompt(info)], temperature=1.0, max_new_tokens=config.max_new_tokens)
    with torch.no_grad():
        trained, warm = policy.score(samples).token_logprobs, sft_model.score(samples).token_logprobs
    assert not torch.allclose(trained, warm, atol=1e-4)


def test_trained_policy_of_a_folder_that_is_not_a_run_is_one_error_line(tmp_path):
    from vlmrl.infra.errors import UsageError

    with pytest.raises(UsageError, match="not a `vlmrl train` run directory"):
        trained_policy(tmp_path)


def test_bench_learn_rejects_an_override_without_a_stage(capsys):
    assert main(["bench", "learn", "--env", "numberline", "lr=1e-3"]) == 2
    error = capsys.readouterr().err.strip()
    assert error == "vlmrl: error: override 'lr=1e-3' must read sft.key=value or rl.key=value"


def test_bench_learn_can_leave_out_the_untrained_row_and_play_the_original_rules(tiny_llava, tmp_path, capsys):
    overrides = [f"sft.model={tiny_llava}", *(f"sft.{o}" for o in SFT), *(f"rl.{o}" for o in RL)]
    overrides += ["sft.env_kwargs={rules: rl4vlm}", "rl.env_kwargs={rules: rl4vlm}"]
    argv = ["bench", "learn", "--env", "numberline", "--out", str(tmp_path), "--episodes", "2", "--json"]
    assert main([*argv, "--skip-untrained", *overrides]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["eval_env_kwargs"] == {"rules": "rl4vlm"}
    assert "numberline (rules=rl4vlm): 2 held-out episodes" in learn_table(summary).title
    assert [stage["stage"] for stage in summary["stages"]] == ["sft", "rl"]
    assert summary["stages"][0]["episodes"] == 2


def test_vlmrl_eval_scores_a_trained_run_as_the_run_evaluates_itself(pipeline, capsys, monkeypatch):
    out, _ = pipeline
    argv = ["eval", "--env", "numberline", "--agent", f"expert,{out / 'rl'}", "--episodes", "3"]
    assert main([*argv, "--seed", str(EVAL_SEED_BASE), "--json"]) == 0
    expert, trained = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert expert["agent"] == "expert" and trained["agent"] == str(out / "rl") and trained["episodes"] == 3
    policy, config = trained_policy(out / "rl")
    torch.manual_seed(EVAL_SEED_BASE)
    assert evaluate_heldout(policy, config, 3).as_dict() | {"agent": trained["agent"]} == trained
    greedy = [*argv[:4], str(out / "rl"), "--episodes", "3", "--seed", str(EVAL_SEED_BASE), "--temperature", "0"]
    assert main([*greedy, "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    torch.manual_seed(EVAL_SEED_BASE)
    config = dataclasses.replace(config, eval_temperature=0.0)
    assert evaluate_heldout(policy, config, 3).as_dict() | {"agent": row["agent"]} == row
    assert main([*greedy[:-1], "0.001"]) == 2
    assert "--temperature must be 0 (greedy) or at least 0.01, not 0.001" in capsys.readouterr().err
    assert main(["eval", "--env", "numberline", "--agent", "expert", "--temperature", "0.5"]) == 2
    assert "none of the agents is a run folder" in capsys.readouterr().err
    import vlmrl.recipes.ppo as recipe

    def no_loading(*_):
        raise AssertionError("the run's game is checked before its policy is built")

    monkeypatch.setattr(recipe, "build_policy", no_loading)
    assert main(["eval", "--env", "blackjack", "--agent", str(out / "rl")]) == 2
    assert "was trained on numberline, not blackjack: use --env numberline" in capsys.readouterr().err


def test_vlmrl_eval_scores_an_sft_run_as_bench_learn_judges_its_warm_up(pipeline, capsys):
    out, _ = pipeline
    argv = ["eval", "--env", "numberline", "--agent", str(out / "sft"), "--episodes", "3", "--json"]
    assert main([*argv, "--seed", str(EVAL_SEED_BASE)]) == 0
    row = json.loads(capsys.readouterr().out)
    torch.manual_seed(EVAL_SEED_BASE)
    expected = evaluate_heldout(load_policy(out / "sft" / "model").eval(), load_config(env="numberline"), 3)
    assert expected.as_dict() | {"agent": str(out / "sft")} == row
