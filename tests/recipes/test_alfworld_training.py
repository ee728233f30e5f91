"""ALFWorld through the training side: PPO, SFT, evaluation per task type, resuming, and the
one-line error when the optional alfworld package is missing (that test runs without it too)."""

from __future__ import annotations

import json
import sys

import pytest

from tiny_runs import TINY
from vlmrl.cli import main
from vlmrl.games import get_task
from vlmrl.games.alfworld import TASK_TYPES
from vlmrl.infra.metrics import deterministic_view
from vlmrl.recipes.config import load_config

TASK = get_task("alfworld")


@pytest.fixture(scope="module")
def alfworld():
    pytest.importorskip("alfworld")


@pytest.fixture(scope="module")
def tiny_llava(alfworld, tmp_path_factory):
    from vlmrl.tiny import build_tiny_model

    return build_tiny_model("llava", "test", tmp_path_factory.mktemp("model") / "llava")


def tiny_config(model, run_dir, *extra: str):
    return load_config(env="alfworld", overrides=[*TINY, f"model={model}", f"out={run_dir}", *extra])


def records(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_one_tiny_training_iteration_trains_on_the_train_split_and_evaluates_on_held_out_games(
    tiny_llava, tmp_path, monkeypatch
):
    import vlmrl.evaluation.evaluate
    import vlmrl.recipes.rollout
    from vlmrl.recipes.ppo import train

    splits: dict[str, list] = {"rollout": [], "evaluate": []}
    for name, module in (("rollout", vlmrl.recipes.rollout), ("evaluate", vlmrl.evaluation.evaluate)):
        original = module.make_text_env

        def recording(task, env_kwargs=None, *args, _name=name, _original=original, **kwargs):
            splits[_name].append((env_kwargs or {}).get("split"))
            return _original(task, env_kwargs, *args, **kwargs)

        monkeypatch.setattr(module, "make_text_env", recording)
    run_dir = train(tiny_config(tiny_llava, tmp_path / "run", "total_steps=4"))
    (record,) = records(run_dir)
    assert record["update"] == 1 and record["env_steps"] == 4
    for key in ("losses/policy_loss", "losses/value_loss", "charts/invalid_rate", "eval/success_rate"):
        assert key in record, key
    assert splits == {"rollout": ["train", "train"], "evaluate": ["valid_unseen", "valid_unseen"]}
    assert (run_dir / "checkpoints" / "step-1").is_dir() and (run_dir / "curve.png").is_file()


def test_tiny_model_prompts_fit_its_context(tiny_llava):
    """ALFWorld prompts are long (every admissible command is listed): they must fit the tiny
    models' positions with room for the answer, and the tokenizer must know their words."""
    from transformers import AutoConfig, AutoTokenizer

    from vlmrl.games import make_env

    tokenizer = AutoTokenizer.from_pretrained(tiny_llava)
    positions = AutoConfig.from_pretrained(tiny_llava).get_text_config().max_position_embeddings
    env = make_env("alfworld", split="valid_unseen")
    lengths, characters = [], 0
    for game in range(len(env.unwrapped.games)):
        _, info = env.reset(seed=0, options={"game": game})
        prompt = TASK.prompt(info)
        lengths.append(len(tokenizer(prompt, add_special_tokens=False)["input_ids"]))
        characters += len(prompt)
    assert max(lengths) + 64 + 256 < positions  # prompt, image tokens, the longest answer
    assert characters / sum(lengths) > 3.5  # measured 4.5: ALFWorld's words are in the vocabulary


@pytest.mark.parametrize("behaviour", ["expert", "random", "epsilon"])
def test_alfworld_demonstrations_parse_back_to_the_behaviour_action(alfworld, behaviour):
    from vlmrl.recipes.sft import collect_demonstrations

    demonstrations = collect_demonstrations(TASK, behaviour, episodes=2, seed=3, env_kwargs={"split": "valid_seen"})
    assert demonstrations
    for demo in demonstrations:
        assert TASK.parse(demo.answer, demo.info).action == demo.action
        assert demo.info["admissible_commands"][demo.action] == json.loads(demo.answer)["action"]
        assert TASK.prompt(demo.info) == demo.prompt


def test_sft_on_alfworld_checks_held_out_answers_against_each_steps_admissible_commands(tiny_llava, tmp_path):
    from vlmrl.recipes.config import load_sft_config
    from vlmrl.recipes.sft import sft

    config = load_sft_config(
        env="alfworld",
        overrides=[
            f"model={tiny_llava}",
            f"out={tmp_path / 'sft'}",
            "episodes=2",
            "epochs=1",
            "heldout_fraction=0.5",
            "eval_examples=2",
            "max_new_tokens=8",
            "tensorboard=false",
        ],
    )
    assert config.env_kwargs == {"split": "train"} and config.behaviour == "expert"
    summary = json.loads((sft(config) / "summary.json").read_text())
    assert summary["heldout"] > 0 and 0.0 <= summary["sft/valid_rate"] <= 1.0


def test_evaluation_reports_success_per_task_type(tiny_llava):
    from vlmrl.evaluation.agents import ExpertAgent
    from vlmrl.evaluation.evaluate import evaluate, play_policy, summarize
    from vlmrl.policy import load_policy

    expert = evaluate(ExpertAgent(TASK), episodes=6, seed=0, env_kwargs={"split": "valid_unseen"})
    assert expert.success_rate == 1.0 and expert.invalid_rate == 0.0
    assert sum(row["episodes"] for row in expert.per_type.values()) == 6
    assert set(expert.per_type) <= set(TASK_TYPES) and len(expert.per_type) > 1
    assert all(row["success_rate"] == 1.0 for row in expert.per_type.values())
    assert expert.as_dict()["per_type"] == expert.per_type
    played = play_policy(
        load_policy(tiny_llava), TASK, range(2), max_new_tokens=4, env_kwargs={"split": "valid_unseen"}
    )
    policy = summarize(TASK, "policy", played)
    assert sum(row["episodes"] for row in policy.per_type.values()) == 2
    assert policy.invalid_rate > 0.9  # four tokens of an untrained model never name a command: the -1 rule


def test_alfworld_games_in_worker_processes_play_exactly_as_in_process(tiny_llava):
    """The text engine in 2 worker processes: the same episodes (random admissible commands for the
    untrained model's answers, drawn in the workers) as in this process."""
    import torch

    from vlmrl.evaluation.evaluate import play_policy
    from vlmrl.policy import load_policy

    policy = load_policy(tiny_llava)
    played = []
    for workers in (0, 2):
        torch.manual_seed(0)
        episodes = play_policy(
            policy, TASK, range(2), max_new_tokens=4, invalid_action="random", batch_size=2, env_workers=workers
        )
        played.append([(e.success, e.ret, e.length, e.invalid, e.task_type) for e in episodes])
    assert played[0] == played[1] and len(played[0]) == 2


def test_card_games_report_no_task_types():
    from vlmrl.evaluation.agents import ExpertAgent
    from vlmrl.evaluation.evaluate import evaluate

    result = evaluate(ExpertAgent(get_task("numberline")), episodes=3, seed=0)
    assert result.per_type is None and "per_type" not in result.as_dict()


def test_resumed_alfworld_run_replays_admissible_commands_and_logs_the_same(tiny_llava, tmp_path):
    """Every answer of the untrained model is invalid; with invalid_action=random each becomes a
    random admissible command, so the saved episodes hold action ids that only mean something in
    the state they were taken in, which the resumed run must replay."""
    from vlmrl.recipes.ppo import train

    extra = ("total_steps=24", "steps_per_update=8", "eval_every=2", "eval_episodes=1", "invalid_action=random")
    whole = train(tiny_config(tiny_llava, tmp_path / "whole", *extra))
    stopped = train(tiny_config(tiny_llava, tmp_path / "stopped", *extra), stop_after=1)
    assert len(records(stopped)) == 1
    resumed = train(resume=stopped)
    expected = [deterministic_view(r) for r in records(whole)]
    assert [deterministic_view(r) for r in records(resumed)] == expected
    assert len(expected) == 3


def test_eval_and_play_take_the_split_and_other_env_kwargs(alfworld, monkeypatch, capsys, tmp_path):
    import vlmrl.evaluation.evaluate

    splits = []
    original = vlmrl.evaluation.evaluate.make_text_env

    def recording(task, env_kwargs=None, *args, **kwargs):
        splits.append((env_kwargs or {}).get("split"))
        return original(task, env_kwargs, *args, **kwargs)

    monkeypatch.setattr(vlmrl.evaluation.evaluate, "make_text_env", recording)
    argv = ["eval", "--env", "alfworld", "--split", "valid_seen", "--episodes", "2", "--json"]
    assert main([*argv, "--env-kwargs", "{goal_reward: level}"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert splits == ["valid_seen"] and result["env_kwargs"] == {"goal_reward": "level", "split": "valid_seen"}
    assert result["success_rate"] == 1.0 and sum(row["episodes"] for row in result["per_type"].values()) == 2
    assert main(["eval", "--env", "alfworld", "--episodes", "1", "--env-kwargs", "{split: valid_unseen}"]) == 0
    assert splits[-1] == "valid_unseen" and "split=valid_unseen" in capsys.readouterr().out
    gif = tmp_path / "episode.gif"
    assert main(["play", "--env", "alfworld", "--split", "valid_unseen", "--out", str(gif)]) == 0 and gif.is_file()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--split", "test"], "unknown ALFWorld split 'test'; known splits: train, valid_seen, valid_unseen"),
        (["--split", "train", "--env-kwargs", "{split: valid_seen}"], "disagree"),
        (["--env-kwargs", "{colour: red}"], "unexpected keyword argument 'colour'"),
        (["--env-kwargs", "{expert: oracle}"], "expert must be one of handcoded, planner"),
    ],
)
def test_bad_env_kwargs_are_one_line_before_any_episode(alfworld, argv, message, capsys):
    assert main(["eval", "--env", "alfworld", *argv]) == 2
    error = capsys.readouterr().err.strip()
    assert message in error and len(error.splitlines()) == 1


def test_without_games_the_commands_say_how_to_get_them_in_one_line(alfworld, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    assert main(["eval", "--env", "alfworld", "--split", "valid_unseen"]) == 2
    error = capsys.readouterr().err.strip()
    assert "alfworld-download" in error and "json_2.1.1/valid_unseen" in error and len(error.splitlines()) == 1


@pytest.mark.parametrize(
    "command",
    [
        ["train", "--env", "alfworld"],
        ["sft", "--env", "alfworld"],
        ["eval", "--env", "alfworld"],
        ["eval", "--env", "alfworld", "--split", "valid_unseen"],
        ["play", "--env", "alfworld"],
    ],
)
def test_without_alfworld_the_commands_say_how_to_install_it_in_one_line(command, monkeypatch, capsys):
    for module in ("alfworld", "alfworld.agents.environment.alfred_tw_env", "textworld", "textworld.envs"):
        monkeypatch.setitem(sys.modules, module, None)  # importing fails, as where alfworld is not installed
    assert main(command) == 2
    error = capsys.readouterr().err.strip()
    assert "pip install 'vlmrl[alfworld]'" in error and "alfworld-download" in error
    assert len(error.splitlines()) == 1
