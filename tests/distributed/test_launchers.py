"""The commands under real launchers: `torchrun` and `accelerate launch`, 2 processes on CPU."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import vlmrl.presets
from tiny_runs import TINY
from vlmrl.infra.metrics import read_metrics
from vlmrl.policy import load_policy
from vlmrl.recipes.ppo import evaluate_heldout, trained_policy

TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
ACCELERATE = [sys.executable, "-m", "accelerate.commands.launch", "--num_processes=2"]
ACCELERATE_CONFIGS = Path(vlmrl.presets.__file__).parent / "accelerate"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def run(launcher: list[str], *argv: str) -> subprocess.CompletedProcess:
    return subprocess.run([*launcher, "-m", "vlmrl", *argv], env=ENV, capture_output=True, text=True, timeout=300)


def test_torchrun_trains_and_rank_0_alone_speaks(tiny_llava, tmp_path):
    done = run(
        TORCHRUN, "train", "--env", "numberline", *TINY, f"model={tiny_llava}", f"out={tmp_path}", "total_steps=8"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.count("run written to") == 1
    assert [(r["update"], r["world_size"]) for r in read_metrics(tmp_path)] == [(1, 2), (2, 2)]
    policy, config = trained_policy(tmp_path)  # one process reads what two wrote
    assert config.num_envs == 2 and evaluate_heldout(policy, config, 2).episodes == 2


@pytest.mark.parametrize(
    "config_file,layout",
    [
        ("ddp", "each with a whole copy of the model"),
        ("fsdp2", "each with 1/2 of the model (FSDP2)"),
        pytest.param(
            "deepspeed-zero2-offload",
            "each with a whole copy of the model (DeepSpeed ZeRO-2, the optimizer in CPU memory)",
            marks=pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="the deepspeed extra"),
        ),
    ],
)
def test_accelerate_launch_runs_sft_with_a_shipped_config_file(tiny_llava, tmp_path, config_file, layout):
    sft = ["episodes=4", "epochs=1", "batch_size=4", "eval_examples=2", "max_new_tokens=8", "tensorboard=false"]
    launcher = [*ACCELERATE, f"--config_file={ACCELERATE_CONFIGS / f'{config_file}.yaml'}"]
    done = run(launcher, "sft", "--env", "numberline", f"model={tiny_llava}", f"out={tmp_path}", *sft)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"vlmrl: 2 processes, {layout}" in done.stderr
    assert all(r["world_size"] == 2 for r in read_metrics(tmp_path))
    trained = load_policy(tmp_path / "model", device="cpu")  # the whole model, gathered from the ranks
    start = load_policy(tiny_llava, device="cpu")
    changed = [not torch.equal(a, b) for a, b in zip(trained.model.parameters(), start.model.parameters(), strict=True)]
    assert not trained.sharded and any(changed)


def test_torchrun_runs_bench_learn(tiny_llava, tmp_path):
    sft = ["episodes=4", "epochs=1", "batch_size=4", "eval_examples=2", "max_new_tokens=8", "tensorboard=false"]
    rl = [*TINY, "total_steps=8", "eval_every=0"]
    stages = [f"sft.model={tiny_llava}", *(f"sft.{o}" for o in sft), *(f"rl.{o}" for o in rl)]
    done = run(
        TORCHRUN, "bench", "learn", "--env", "numberline", "--out", str(tmp_path), "--episodes", "3", "--json", *stages
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert [stage["episodes"] for stage in summary["stages"]] == [3, 3, 3]
    assert (tmp_path / "episode.gif").is_file() and (tmp_path / "summary.json").is_file()


def test_a_bad_split_is_one_line_said_once(tiny_llava, tmp_path):
    done = run(
        TORCHRUN,
        "train",
        "--env",
        "numberline",
        *TINY,
        f"model={tiny_llava}",
        f"out={tmp_path}",
        "num_envs=3",
        "steps_per_update=6",
    )
    assert done.returncode != 0
    errors = [line for line in done.stderr.splitlines() if line.startswith("vlmrl: error:")]
    assert errors == [
        "vlmrl: error: num_envs (3) must be a multiple of the number of processes (2): each rank takes an equal share"
    ]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def node_launcher(rank: int, port: int, argv: list[str]) -> subprocess.Popen:
    """torchrun for machine `rank` of two, one process on it."""
    launcher = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2", f"--node-rank={rank}"]
    launcher += ["--nproc-per-node=1", "--master-addr=127.0.0.1", f"--master-port={port}"]
    return subprocess.Popen(
        [*launcher, "-m", "vlmrl", *argv], env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_two_machines_each_with_its_own_torchrun_train_together(tiny_llava, tmp_path):
    """Two launcher agents (`--nnodes 2`, one process each) on this host stand in for two machines."""
    port = free_port()
    argv = ["train", "--env", "numberline", *TINY, f"model={tiny_llava}", f"out={tmp_path}", "total_steps=8"]
    nodes = [node_launcher(rank, port, argv) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], outputs[0][1][-2000:] + outputs[1][1][-2000:]
    assert "run written to" in outputs[0][0] and "run written to" not in outputs[1][0]
    assert [(r["update"], r["world_size"]) for r in read_metrics(tmp_path)] == [(1, 2), (2, 2)]
