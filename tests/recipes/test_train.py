"""`vlmrl train` end to end on tiny models: every game runs, resuming reproduces, Ctrl-C checkpoints."""

from __future__ import annotations

import itertools
import json
import signal

import pytest
import torch
from PIL import Image

from tiny_runs import TINY
from vlmrl.cli import main
from vlmrl.infra.checkpoint import latest_checkpoint
from vlmrl.infra.metrics import deterministic_view
from vlmrl.recipes.config import load_config
from vlmrl.recipes.ppo import train


def tiny_config(model, run_dir, *extra: str, env: str = "numberline"):
    return load_config(env=env, overrides=[*TINY, f"model={model}", f"out={run_dir}", *extra])


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("env", ["numberline", "ezpoints", "points24", "blackjack"])
def test_one_tiny_training_iteration_on_each_game(env, tiny_llava, tmp_path):
    # the game's preset with its critic (Blackjack's preset is grouped: GRPO runs have their own tests)
    run_dir = train(tiny_config(tiny_llava, tmp_path / "run", "total_steps=4", "advantage=gae", env=env))
    (record,) = records(run_dir)
    assert record["update"] == 1 and record["env_steps"] == 4
    for key in (
        "losses/policy_loss",
        "losses/value_loss",
        "losses/approx_kl",
        "losses/clipfrac",
        "losses/explained_variance",
        "losses/entropy",
        "charts/invalid_rate",
        "charts/SPS",
        "charts/tokens_per_second",
        "eval/success_rate",
    ):
        assert key in record, key
    assert (run_dir / "config.yaml").is_file() and latest_checkpoint(run_dir).name == "step-1"
    with Image.open(run_dir / "curve.png") as curve:
        assert curve.width > 300


def test_training_changes_the_trained_weights_only(tiny_llava, tmp_path):
    from vlmrl.policy import LoraSettings, load_policy
    from vlmrl.policy.saving import trainable_tensors

    run_dir = train(tiny_config(tiny_llava, tmp_path / "run", "total_steps=4"))
    from vlmrl.infra.checkpoint import load_checkpoint

    trained = load_checkpoint(latest_checkpoint(run_dir)).tensors
    fresh = trainable_tensors(load_policy(tiny_llava, lora=LoraSettings(4, 8, 0.05)))
    changed = [n for n, t in trained["adapter"].items() if not torch.equal(t, fresh["adapter"][n])]
    assert changed, "PPO must move the adapters"


def test_resumed_run_logs_the_same_metrics_as_an_uninterrupted_one(tiny_llava, tmp_path):
    whole = train(tiny_config(tiny_llava, tmp_path / "whole", "total_steps=12", "eval_every=2"))
    stopped = train(tiny_config(tiny_llava, tmp_path / "stopped", "total_steps=12", "eval_every=2"), stop_after=2)
    assert len(records(stopped)) == 2
    resumed = train(resume=stopped)
    expected = [deterministic_view(r) for r in records(whole)]
    assert [deterministic_view(r) for r in records(resumed)] == expected
    assert len(expected) == 3


def test_environments_in_worker_processes_train_exactly_as_in_process(tiny_llava, tmp_path):
    """env_workers: the same metrics, update by update (random fallbacks for unparseable answers
    drawn in the workers), and a run stopped with workers resumes to the same end."""
    common = ("total_steps=12", "eval_every=2", "invalid_action=random")
    here = train(tiny_config(tiny_llava, tmp_path / "here", *common))
    stopped = train(tiny_config(tiny_llava, tmp_path / "workers", *common, "env_workers=2"), stop_after=2)
    there = train(resume=stopped)
    expected = [deterministic_view(r) for r in records(here)]
    assert [deterministic_view(r) for r in records(there)] == expected and len(expected) == 3
    assert any(r["charts/invalid_rate"] > 0 for r in records(here))


def test_ctrl_c_finishes_the_update_and_writes_a_checkpoint(tiny_llava, tmp_path, monkeypatch):
    import vlmrl.recipes.ppo as recipe

    original = recipe.ppo_update

    def interrupted(*args, **kwargs):
        signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during the update
        return original(*args, **kwargs)

    monkeypatch.setattr(recipe, "ppo_update", interrupted)
    run_dir = train(tiny_config(tiny_llava, tmp_path / "run", "total_steps=16", "checkpoint_every=10"))
    assert len(records(run_dir)) == 1 and latest_checkpoint(run_dir).name == "step-1"


def test_train_command_errors_are_one_line(capsys, tmp_path):
    assert main(["train", "--env", "numberline", "gamma=2"]) == 2
    assert "gamma must be between 0 and 1" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    assert main(["train"]) == 2
    assert "give --config FILE or --env NAME" in capsys.readouterr().err


def test_with_a_negligible_learning_rate_ppo_ratios_stay_at_one(tiny_llava, tmp_path):
    """Re-scoring inside the update reproduces the sampled log-probs: nothing is clipped, KL ~ 0."""
    run_dir = train(
        tiny_config(
            tiny_llava, tmp_path / "run", "total_steps=4", "lr=1e-12", "lr_min=0", "lora_dropout=0.0", "eval_every=0"
        )
    )
    (record,) = records(run_dir)
    assert abs(record["losses/approx_kl"]) < 1e-5 and record["losses/clipfrac"] == 0.0


@pytest.mark.parametrize("lora", ["true", "false"])
def test_the_reference_kl_is_zero_until_the_policy_moves_and_positive_after(lora, tiny_llava, tmp_path):
    """Per-token reference log-probs line up with the re-scored ones: with LoRA the reference is the
    model with its adapters off, with full fine-tuning a frozen copy."""
    still = train(
        tiny_config(
            tiny_llava,
            tmp_path / "still",
            f"lora={lora}",
            "kl_coef=0.1",
            "total_steps=4",
            "lr=1e-12",
            "lr_min=0",
            "lora_dropout=0.0",
            "eval_every=0",
        )
    )
    (record,) = records(still)
    assert 0.0 <= record["losses/kl_ref"] < 1e-5
    moving = train(
        tiny_config(tiny_llava, tmp_path / "moving", f"lora={lora}", "kl_coef=0.1", "total_steps=8", "eval_every=0")
    )
    assert records(moving)[-1]["losses/kl_ref"] > 1e-4


def test_each_group_decays_on_a_cosine_from_its_lr_to_lr_min_over_the_run(tiny_llava, tmp_path):
    from vlmrl.recipes.ppo import optimizer_steps_per_update, setup

    config = tiny_config(tiny_llava, tmp_path / "run", "lr=1e-3", "lr_min=1e-4", "value_lr=2e-2")
    run = setup(config)
    total = config.updates * optimizer_steps_per_update(config)
    seen = [run.scheduler.get_last_lr()]
    for _ in range(total):
        run.optimizer.step()
        run.scheduler.step()
        seen.append(run.scheduler.get_last_lr())
    assert seen[0] == pytest.approx([1e-3, 2e-2])
    assert seen[total // 2] == pytest.approx([(1e-3 + 1e-4) / 2, (2e-2 + 2e-3) / 2])  # the cosine's midpoint
    assert seen[-1] == pytest.approx([1e-4, 2e-3])  # the value head ends at the same fraction lr_min / lr
    actor = [lrs[0] for lrs in seen]
    assert all(later <= earlier for earlier, later in itertools.pairwise(actor))
