"""`vlmrl train` with group-relative advantages (GRPO, GiGPO) on tiny models, and what every run logs of
what the agent writes (samples.jsonl, TensorBoard samples, the diversity of thoughts)."""

from __future__ import annotations

import json
import math

import pytest
import torch

from tiny_runs import TINY
from vlmrl.cli import main
from vlmrl.infra.checkpoint import latest_checkpoint, load_checkpoint
from vlmrl.infra.metrics import deterministic_view
from vlmrl.recipes.config import load_config
from vlmrl.recipes.ppo import build_policy, epoch_minibatches, setup, train

GROUPED = ["num_envs=4", "group_size=2", "steps_per_update=8", "invalid_action=random"]
"""Two groups of two; unparseable answers (the tiny model's) move the game at random, so hands are short."""


def tiny_config(model, run_dir, *extra: str, env: str = "blackjack"):
    return load_config(env=env, overrides=[*TINY, f"model={model}", f"out={run_dir}", *GROUPED, *extra])


def records(run_dir, name="metrics.jsonl"):
    return [json.loads(line) for line in (run_dir / name).read_text().splitlines()]


@pytest.mark.parametrize("advantage", ["grpo", "gigpo"])
def test_group_advantages_train_the_policy_and_leave_the_value_head_alone(advantage, tiny_llava, tmp_path):
    config = tiny_config(tiny_llava, tmp_path / "run", f"advantage={advantage}", "total_steps=16")
    run_dir = train(config)
    rows = records(run_dir)
    assert [row["update"] for row in rows] == [1, 2]
    for update, row in enumerate(rows, 1):  # rounds of whole episodes: at least steps_per_update each
        assert row["env_steps"] >= 8 * update
        assert "losses/value_loss" not in row and "losses/explained_variance" not in row
        assert 0 < row["charts/cot_diversity"] <= 1 and row["charts/episodes_finished"] % 4 == 0
        assert 0 <= row["charts/tied_groups"] <= 1
    torch.manual_seed(config.seed)  # the value head a run starts from
    fresh = build_policy(config)
    trained = load_checkpoint(latest_checkpoint(run_dir)).tensors
    for name, tensor in fresh.value_head.state_dict().items():
        assert torch.equal(trained["value_head"][name], tensor), name
    assert any(not torch.equal(t, 0 * t) for t in trained["adapter"].values())


def test_a_resumed_grouped_run_logs_what_an_uninterrupted_one_does(tiny_llava, tmp_path):
    extra = ("advantage=gigpo", "total_steps=24", "eval_every=2", "samples_every=1", "samples_logged=2")
    whole = train(tiny_config(tiny_llava, tmp_path / "whole", *extra))
    stopped = train(tiny_config(tiny_llava, tmp_path / "stopped", *extra), stop_after=2)
    resumed = train(resume=stopped)
    assert [deterministic_view(r) for r in records(resumed)] == [deterministic_view(r) for r in records(whole)]
    assert records(resumed, "samples.jsonl") == records(whole, "samples.jsonl")


def test_sampled_steps_go_to_samples_jsonl_and_tensorboard(tiny_llava, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    extra = ("total_steps=8", "samples_every=1", "samples_logged=3", "tensorboard=true", "eval_every=0")
    run_dir = train(
        load_config(env="numberline", overrides=[*TINY, f"model={tiny_llava}", f"out={tmp_path / 'r'}", *extra])
    )
    rows = records(run_dir, "samples.jsonl")
    assert [row["update"] for row in rows] == [1, 1, 1, 2, 2, 2]
    for row in rows:
        assert set(row) == {
            "update",
            "env_steps",
            "index",
            "image",
            "prompt",
            "answer",
            "action",
            "reward",
            "advantage",
        }
        assert (run_dir / row["image"]).is_file() and "NumberLine" in row["prompt"]
        assert row["action"] in (None, "-", "+") and math.isfinite(row["advantage"])
    assert [row["index"] for row in rows[:3]] == [0, 2, 3]  # spread over the 4 steps of the update
    events = EventAccumulator(str(run_dir), size_guidance={"images": 0, "tensors": 0}).Reload()
    assert {"samples/image/0", "samples/image/2"} <= set(events.Tags()["images"])
    assert any(tag.startswith("samples/text/0") for tag in events.Tags()["tensors"])


def test_grouped_minibatches_cover_the_buffer_once_in_a_fixed_number_of_passes(tiny_llava, tmp_path):
    run = setup(tiny_config(tiny_llava, tmp_path / "run", "advantage=grpo", "minibatch_size=3"))
    batches, weights = epoch_minibatches(run, 11)  # 11 samples, steps_per_update 8: ceil(8 / 3) = 3 passes
    assert len(batches) == 3 and weights == [1.0, 1.0, 1.0]
    assert sorted(torch.cat(batches).tolist()) == list(range(11))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["advantage=ppo"], "advantage must be one of gae, grpo, gigpo, not 'ppo'"),
        (["advantage=grpo", "group_size=1"], "group_size must be at least 2, not 1"),
        (
            ["advantage=gigpo", "num_envs=6", "group_size=4", "steps_per_update=12"],
            "num_envs (6) must be a multiple of group_size (4)",
        ),
        (["eval_seeds=train"], "eval_seeds must be one of test, validation, not 'train'"),
        (["gigpo_step_weight=-1"], "gigpo_step_weight must be not negative"),
    ],
)
def test_group_settings_that_cannot_work_are_one_line(overrides, message, capsys):
    assert main(["train", "--env", "numberline", "--print-config", *overrides]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
