"""Data parallelism on CPU (gloo, 2 processes, one thread each): N processes compute what one does."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import vlmrl.presets
from vlmrl.infra.checkpoint import load_weights
from vlmrl.infra.metrics import deterministic_view, read_metrics
from vlmrl.policy.saving import trainable_tensors
from vlmrl.recipes.ppo import trained_policy

WORKER = Path(__file__).with_name("worker.py")
TESTS = Path(__file__).parents[1]


def command(processes: int, *args: str) -> list[str]:
    """The worker under torchrun (processes > 1) or alone."""
    launcher = [sys.executable]
    if processes > 1:
        launcher += ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}"]
    return [*launcher, str(WORKER), *args]


def environment(**extra: str) -> dict[str, str]:
    """One thread per process; the tests folder importable (tiny_runs)."""
    path = f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, **extra}


DEEPSPEED = pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="the deepspeed extra")
SHARDINGS = pytest.mark.parametrize("sharding", ["replicate", "fsdp", pytest.param("deepspeed", marks=DEEPSPEED)])
"""Each equivalence holds for every layout of the model over the ranks: whole copies, FSDP2's shards, and
DeepSpeed's ZeRO-2 with the optimizer in CPU memory (the paper's)."""


def launch(
    processes: int, *args: str, sharding: str = "replicate", timeout: float = 240, **variables: str
) -> subprocess.CompletedProcess:
    env = environment(WORKER_SHARDING=sharding, **variables)
    done = subprocess.run(command(processes, *args), env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def results(out: Path, processes: int) -> list[dict]:
    return [json.loads((out / f"rank-{rank}.json").read_text()) for rank in range(processes)]


@SHARDINGS
def test_one_optimizer_step_on_two_halves_equals_one_step_on_the_whole_buffer(tiny_llava, tmp_path, sharding):
    launch(1, "one-step", str(tiny_llava), str(tmp_path / "one"))
    launch(2, "one-step", str(tiny_llava), str(tmp_path / "two"), sharding=sharding)
    alone, split = (
        load_file(tmp_path / "one" / "weights.safetensors"),
        load_file(tmp_path / "two" / "weights.safetensors"),
    )
    assert alone.keys() == split.keys() and alone
    for name in alone:
        torch.testing.assert_close(split[name], alone[name], atol=1e-5, rtol=0, msg=name)
    [one] = results(tmp_path / "one", 1)
    two = results(tmp_path / "two", 2)
    assert one["losses/grad_norm"] > 0
    for rank in two:  # every rank clipped the same, global gradient
        assert rank["losses/grad_norm"] == pytest.approx(one["losses/grad_norm"], rel=1e-5)
        assert rank["losses/policy_loss"] == pytest.approx(one["losses/policy_loss"], rel=1e-4, abs=1e-6)


def test_fsdp2_in_zero2s_layout_steps_as_one_process_does(tiny_llava, tmp_path):
    """The shipped accelerate config that keeps gathered weights until backward (the paper's ZeRO-2)."""
    launch(1, "one-step", str(tiny_llava), str(tmp_path / "one"))
    config = Path(vlmrl.presets.__file__).parent / "accelerate" / "fsdp2-zero2.yaml"
    accelerate = [sys.executable, "-m", "accelerate.commands.launch", f"--config_file={config}", "--num_processes=2"]
    done = subprocess.run(
        [*accelerate, str(WORKER), "one-step", str(tiny_llava), str(tmp_path / "two")],
        env=environment(WORKER_SHARDING="auto"),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    alone, split = (load_file(tmp_path / name / "weights.safetensors") for name in ("one", "two"))
    assert alone.keys() == split.keys() and alone
    for name in alone:
        torch.testing.assert_close(split[name], alone[name], atol=1e-5, rtol=0, msg=name)
    [one] = results(tmp_path / "one", 1)
    assert all(
        rank["losses/grad_norm"] == pytest.approx(one["losses/grad_norm"], rel=1e-5)
        for rank in results(tmp_path / "two", 2)
    )


@SHARDINGS
def test_one_sft_step_on_two_parts_of_a_batch_equals_one_step_on_the_whole_batch(tiny_llava, tmp_path, sharding):
    launch(1, "sft-step", str(tiny_llava), str(tmp_path / "one"))
    launch(2, "sft-step", str(tiny_llava), str(tmp_path / "two"), sharding=sharding)
    alone = load_file(tmp_path / "one" / "weights.safetensors")
    split = load_file(tmp_path / "two" / "weights.safetensors")
    assert alone.keys() == split.keys() and alone
    for name in alone:
        torch.testing.assert_close(split[name], alone[name], atol=1e-5, rtol=0, msg=name)
    [one] = results(tmp_path / "one", 1)
    assert all(rank["sft/loss"] == pytest.approx(one["sft/loss"], rel=1e-5) for rank in results(tmp_path / "two", 2))


@SHARDINGS
def test_a_split_evaluation_plays_the_seeds_and_outcomes_of_one_process(tiny_llava, tmp_path, sharding):
    launch(1, "evaluate", str(tiny_llava), str(tmp_path / "one"))
    launch(2, "evaluate", str(tiny_llava), str(tmp_path / "two"), sharding=sharding)
    [one] = results(tmp_path / "one", 1)
    two = results(tmp_path / "two", 2)
    assert two[0] == two[1] == one and one["episodes"] == 6


@SHARDINGS
def test_a_stopped_and_resumed_two_process_run_logs_what_an_uninterrupted_one_logs(tiny_llava, tmp_path, sharding):
    def train_two(*args: str) -> None:  # 2 updates of 4 steps, a checkpoint after each
        launch(2, "train", str(tiny_llava), str(tmp_path / "out"), *args, sharding=sharding, WORKER_TOTAL_STEPS="8")

    train_two(str(tmp_path / "straight"))
    train_two(str(tmp_path / "stopped"), "1")
    assert [r["update"] for r in read_metrics(tmp_path / "stopped")] == [1]
    if sharding == "replicate":  # the number of processes, not their layout, is what a checkpoint pins
        alone = subprocess.run(
            command(1, "train", str(tiny_llava), str(tmp_path / "out"), str(tmp_path / "stopped")),
            env=environment(WORKER_TOTAL_STEPS="8"),
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert alone.returncode != 0
        assert "was written by 2 process(es), this run has 1: resume it with 2" in alone.stderr
    train_two(str(tmp_path / "stopped"))  # resumes
    straight = [deterministic_view(r) for r in read_metrics(tmp_path / "straight")]
    resumed = [deterministic_view(r) for r in read_metrics(tmp_path / "stopped")]
    assert len(straight) == 2 and all(r["world_size"] == 2 for r in straight)
    assert resumed == straight
    policy, config = trained_policy(tmp_path / "stopped")  # one process reads what the ranks wrote
    assert config.sharding == sharding and not policy.sharded
    _, saved = load_weights(tmp_path / "stopped")
    torch.testing.assert_close(trainable_tensors(policy), saved, rtol=0, atol=0)


@pytest.mark.parametrize("sharding", ["replicate", "fsdp"])
def test_group_advantages_compare_a_group_over_the_ranks_and_step_as_one_process(tiny_llava, tmp_path, sharding):
    """One group of 4 episodes, 2 on each rank, of different lengths (so the ranks' shares differ): the
    advantages are those of the whole group, and one step weighted by each rank's share of the steps gives
    one process's weights."""
    launch(1, "group-step", str(tiny_llava), str(tmp_path / "one"))
    launch(2, "group-step", str(tiny_llava), str(tmp_path / "two"), sharding=sharding)
    [alone], split = results(tmp_path / "one", 1), results(tmp_path / "two", 2)
    order = split[0]["steps"] + split[1]["steps"]  # each rank's steps, by their place in the whole buffer
    assert sorted(order) == alone["steps"] and len(split[0]["steps"]) != len(split[1]["steps"])
    whole = [alone["advantages"][k] for k in order]
    assert split[0]["advantages"] + split[1]["advantages"] == pytest.approx(whole, abs=1e-6)
    assert any(abs(a) > 0.1 for a in whole)
    assert split[0]["losses/grad_norm"] == pytest.approx(alone["losses/grad_norm"], rel=1e-4)
    one, two = load_file(tmp_path / "one" / "weights.safetensors"), load_file(tmp_path / "two" / "weights.safetensors")
    assert max((one[k] - two[k]).abs().max().item() for k in one) < 1e-5


def test_a_grouped_two_process_run_resumes_to_what_an_uninterrupted_one_logs(tiny_llava, tmp_path):
    """Groups over both ranks (group_size 4 of 4 environments), FSDP2: rounds end when every rank's are over."""
    grouped = "advantage=grpo group_size=4 num_envs=4 steps_per_update=8 invalid_action=random"

    def train_two(*args: str) -> None:
        launch(
            2,
            "train",
            str(tiny_llava),
            str(tmp_path / "out"),
            *args,
            sharding="fsdp",
            WORKER_TOTAL_STEPS="16",
            WORKER_OVERRIDES=grouped,
        )

    train_two(str(tmp_path / "straight"))
    train_two(str(tmp_path / "stopped"), "1")
    train_two(str(tmp_path / "stopped"))
    straight = [deterministic_view(r) for r in read_metrics(tmp_path / "straight")]
    assert len(straight) == 2 and all(r["env_steps"] >= 8 * r["update"] for r in straight)
    assert [deterministic_view(r) for r in read_metrics(tmp_path / "stopped")] == straight


def test_a_killed_rank_stops_the_run_at_once_and_it_resumes_from_its_last_checkpoint(tiny_llava, tmp_path):
    out, run = tmp_path / "out", tmp_path / "run"
    env = environment(WORKER_TOTAL_STEPS="64", VLMRL_COLLECTIVE_TIMEOUT="20")
    running = subprocess.Popen(
        command(2, "train", str(tiny_llava), str(out), str(run)), env=env, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 120
    while not (run / "checkpoints" / "step-2").is_dir():
        assert running.poll() is None and time.monotonic() < deadline, "the run ended before its second checkpoint"
        time.sleep(0.2)
    os.kill(int((out / "pid-1").read_text()), signal.SIGKILL)
    killed = time.monotonic()
    _, stderr = running.communicate(timeout=60)
    assert running.returncode != 0 and time.monotonic() - killed < 30
    assert "rank      : 1 (local_rank: 1)" in stderr and "SIGKILL" in stderr  # the launcher names the dead rank
    done = [r["update"] for r in read_metrics(run)]
    subprocess.run(command(2, "train", str(tiny_llava), str(out), str(run)), env=env, check=True, timeout=240)
    resumed = read_metrics(run)
    assert [r["update"] for r in resumed] == list(range(1, 17)) and len(done) >= 2
