"""The pieces of data parallelism that need no second process: who a process is, shares, seeds."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from vlmrl.games import EVAL_SEED_BASE, get_task
from vlmrl.infra.distributed import ALONE, Sharding, World, collective_timeout, split_evenly
from vlmrl.infra.errors import RankError, UsageError
from vlmrl.recipes.rollout import Rollouts


def test_without_a_launcher_a_process_is_rank_0_of_1(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert World.from_environment() == ALONE == World(0, 1, 0)
    assert ALONE.is_main and not ALONE.distributed and ALONE.join() == ALONE


@pytest.mark.parametrize(
    "variables,message",
    [
        ({"RANK": "one", "WORLD_SIZE": "2"}, "the launcher set RANK='one', which is not an integer"),
        (
            {"RANK": "2", "WORLD_SIZE": "2"},
            "the launcher set RANK=2 and WORLD_SIZE=2: a rank must be in 0..WORLD_SIZE-1",
        ),
    ],
)
def test_bad_launcher_variables_are_one_line_of_that_rank(monkeypatch, variables, message):
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(RankError) as error:
        World.from_environment()
    assert str(error.value) == message


@pytest.mark.parametrize("text", ["soon", "0", "-5", "nan"])
def test_a_bad_collective_timeout_is_one_line(monkeypatch, text):
    monkeypatch.setenv("VLMRL_COLLECTIVE_TIMEOUT", text)
    with pytest.raises(UsageError, match=r"VLMRL_COLLECTIVE_TIMEOUT=.* must be a positive number of seconds"):
        collective_timeout()


def test_the_collective_timeout_defaults_to_minutes_not_nccls_half_hour(monkeypatch):
    monkeypatch.delenv("VLMRL_COLLECTIVE_TIMEOUT", raising=False)
    assert collective_timeout().total_seconds() == 300
    monkeypatch.setenv("VLMRL_COLLECTIVE_TIMEOUT", "12.5")
    assert collective_timeout().total_seconds() == 12.5


@given(items=st.integers(0, 50), size=st.integers(1, 9))
def test_split_evenly_gives_every_item_once_in_order_in_near_equal_parts(items, size):
    parts = [list(split_evenly(range(items), World(rank, size))) for rank in range(size)]
    assert [i for part in parts for i in part] == list(range(items))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_an_uneven_share_is_one_line():
    assert World(1, 4).share(8, "num_envs") == 2
    with pytest.raises(UsageError) as error:
        World(0, 4).share(6, "num_envs")
    assert (
        str(error.value)
        == "num_envs (6) must be a multiple of the number of processes (4): each rank takes an equal share"
    )


def test_seeds_are_the_run_seed_alone_and_differ_between_ranks():
    assert ALONE.seed(7) == 7
    assert len({World(rank, 4).seed(7) for rank in range(4)}) == 4


def deals(rollouts: Rollouts, count: int) -> list[int]:
    return [next(rollouts.games._seeds[0]) for _ in range(count)]


def test_one_process_deals_the_seeds_it_always_dealt():
    stream = np.random.default_rng(np.random.SeedSequence([3, 0x5EED]))
    expected = [int(stream.integers(EVAL_SEED_BASE)) for _ in range(1 + 20)][1:]  # the first went to the reset
    assert deals(Rollouts(get_task("numberline"), 1, seed=3), 20) == expected


def test_no_two_ranks_ever_deal_the_same_seed():
    task = get_task("numberline")
    dealt = [deals(Rollouts(task, 1, seed=3, rank=rank, world_size=3), 200) for rank in range(3)]
    for rank, seeds in enumerate(dealt):
        assert all(seed % 3 == rank and 0 <= seed < EVAL_SEED_BASE for seed in seeds)
    assert len({seed for seeds in dealt for seed in seeds}) == 600


ACCELERATE = (
    "ACCELERATE_USE_FSDP",
    "ACCELERATE_USE_DEEPSPEED",
    "FSDP_VERSION",
    "FSDP_RESHARD_AFTER_FORWARD",
    "ACCELERATE_DEEPSPEED_CONFIG_FILE",
    "ACCELERATE_DEEPSPEED_ZERO_STAGE",
    "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE",
    "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE",
)
TWO = World(0, 2, 0)


def launched_with(monkeypatch, **variables: str) -> None:
    for name in (*ACCELERATE, "FSDP_OFFLOAD_PARAMS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)


def test_the_accelerate_config_file_chooses_the_sharding_when_the_run_says_auto(monkeypatch):
    launched_with(monkeypatch)
    assert Sharding.resolve("auto", TWO) == Sharding("replicate")
    assert Sharding.resolve("fsdp", TWO) == Sharding("fsdp", reshard_after_forward=True, offload=False)
    launched_with(monkeypatch, ACCELERATE_USE_FSDP="true", FSDP_VERSION="2", FSDP_RESHARD_AFTER_FORWARD="false")
    assert Sharding.resolve("auto", TWO) == Sharding("fsdp", reshard_after_forward=False)
    assert Sharding.resolve("fsdp", TWO) == Sharding("fsdp", reshard_after_forward=False)
    launched_with(monkeypatch, ACCELERATE_USE_FSDP="true", FSDP_VERSION="2", FSDP_OFFLOAD_PARAMS="true")
    assert Sharding.resolve("auto", TWO) == Sharding("fsdp", offload=True)
    assert Sharding.resolve("auto", ALONE) == Sharding("replicate")  # one process always holds the whole model
    launched_with(monkeypatch)
    assert Sharding.resolve("deepspeed", TWO) == Sharding("deepspeed", offload=True, zero_stage=2)  # the paper's


def test_deepspeed_is_read_from_the_accelerate_config_inline_or_from_its_json_file(monkeypatch, tmp_path):
    inline = {"ACCELERATE_DEEPSPEED_ZERO_STAGE": "1", "ACCELERATE_DEEPSPEED_OFFLOAD_OPTIMIZER_DEVICE": "none"}
    launched_with(monkeypatch, ACCELERATE_USE_DEEPSPEED="true", **inline)
    assert Sharding.resolve("auto", TWO) == Sharding("deepspeed", offload=False, zero_stage=1)
    assert Sharding.resolve("deepspeed", TWO) == Sharding("deepspeed", offload=False, zero_stage=1)
    file = tmp_path / "ds.json"
    file.write_text('{"zero_optimization": {"stage": 2, "offload_optimizer": {"device": "cpu"}}}')
    launched_with(monkeypatch, ACCELERATE_USE_DEEPSPEED="true", ACCELERATE_DEEPSPEED_CONFIG_FILE=str(file))
    assert Sharding.resolve("auto", TWO) == Sharding("deepspeed", offload=True, zero_stage=2)


@pytest.mark.parametrize(
    "variables,asked,message",
    [
        ({"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "1"}, "auto", "vlmrl runs FSDP2 (fsdp_version: 2)"),
        (
            {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2"},
            "replicate",
            "the accelerate config asks for fsdp but the run's config says sharding: replicate",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"},
            "auto",
            "asks for DeepSpeed ZeRO stage 3; vlmrl runs stages 1 and 2 (for weights sharded as ZeRO-3 does, use FSDP2",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_OFFLOAD_PARAM_DEVICE": "nvme"},
            "auto",
            "offloads DeepSpeed's optimizer to 'none' and its weights to 'nvme'",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true"},
            "fsdp",
            "the accelerate config asks for deepspeed but the run's config says sharding: fsdp",
        ),
        (
            {"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_CONFIG_FILE": "/nowhere/ds.json"},
            "auto",
            "DeepSpeed config file '/nowhere/ds.json':",
        ),
        ({"ACCELERATE_USE_FSDP": "maybe"}, "auto", "ACCELERATE_USE_FSDP='maybe'; true or false was expected"),
    ],
)
def test_an_accelerate_config_vlmrl_cannot_follow_is_one_line(monkeypatch, variables, asked, message):
    launched_with(monkeypatch, **variables)
    with pytest.raises(UsageError, match=re.escape(message)) as error:
        Sharding.resolve(asked, TWO)
    assert "\n" not in str(error.value)


ENDING = """
import atexit, sys, threading, time
from pathlib import Path
from vlmrl.infra.distributed import end_process
out = Path(sys.argv[1])
atexit.register(lambda: (out / "atexit").write_text("ran"))
def write_late():
    time.sleep(0.3)
    (out / "thread").write_text("joined")
threading.Thread(target=write_late).start()
sys.stdout.write("unflushed on stdout")
end_process(3)
(out / "after").write_text("end_process returned")
"""


def test_a_process_ended_past_finalization_still_does_what_a_normal_exit_does(tmp_path):
    """`end_process` skips the interpreter's finalization (where gloo's threads can abort a finished
    rank), not the rest of an exit: its code, a writer thread's last write, atexit handlers, buffers."""
    done = subprocess.run([sys.executable, "-c", ENDING, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert done.stdout == "unflushed on stdout"
    assert (tmp_path / "thread").read_text() == "joined"
    assert (tmp_path / "atexit").read_text() == "ran"
    assert not (tmp_path / "after").exists()
