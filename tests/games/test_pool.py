"""Environment pools: worker processes return what in-process stepping returns, in the order asked,
and a worker's error or death is one error naming the worker."""

from __future__ import annotations

import functools
import os

import numpy as np
import pytest

from vlmrl.games import get_task, make_text_env
from vlmrl.games.parsing import format_answer
from vlmrl.games.pool import EnvWorkers, LocalEnvs, make_pool, reset_env, step_env

TASK = get_task("numberline")
MAKE = functools.partial(make_text_env, TASK, None, "random", -1.0)


def pid_of(env) -> int:
    return os.getpid()


def divide_by_zero(env) -> float:
    return 1 / 0


def exit_now(env) -> None:
    os._exit(3)


def broken_env():
    raise OSError("no such game data")


def play(pool, num_envs: int) -> list:
    """Deals, then steps in a scrambled order (some answers unparseable: random fallbacks)."""
    results = pool.apply([(i, reset_env, (100 + i,)) for i in range(num_envs)])
    order = [3, 0, 4, 1, 2][:num_envs]
    for answer in ["garbage", format_answer({"action": "+"}), "no json", format_answer({"action": "-"})]:
        results += pool.apply([(i, step_env, (answer,)) for i in order])
    return results


def same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def test_workers_return_what_local_stepping_returns_in_the_order_asked():
    local = make_pool(MAKE, 5)
    workers = make_pool(MAKE, 5, workers=2)
    try:
        assert isinstance(local, LocalEnvs) and isinstance(workers, EnvWorkers)
        assert same(play(local, 5), play(workers, 5))
        pids = workers.apply([(i, pid_of, ()) for i in range(5)])
        assert len(set(pids)) == 2 and os.getpid() not in pids  # environments 0-2 in one worker, 3-4 in the other
        assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4]
    finally:
        workers.close()


def test_more_workers_than_environments_start_one_per_environment():
    workers = EnvWorkers(MAKE, 2, workers=8)
    try:
        assert len(workers.processes) == 2 and len(workers) == 2
    finally:
        workers.close()
    assert workers.processes == []


def test_an_error_in_a_worker_names_the_worker_and_the_workers_stay_usable():
    workers = EnvWorkers(MAKE, 2, workers=2)
    try:
        with pytest.raises(RuntimeError, match=r"an environment of worker 1 failed while stepping: ZeroDivisionError"):
            workers.apply([(0, reset_env, (1,)), (1, divide_by_zero, ())])
        assert len(workers.apply([(0, reset_env, (1,)), (1, reset_env, (2,))])) == 2
    finally:
        workers.close()


def test_a_dead_worker_is_one_error_naming_it_and_what_to_do():
    workers = EnvWorkers(MAKE, 2, workers=2)
    try:
        with pytest.raises(RuntimeError, match=r"environment worker 0 \(pid \d+\) died while stepping \(exit code 3\)"):
            workers.apply([(0, exit_now, ())])
        with pytest.raises(RuntimeError, match="resume the run from its last checkpoint"):
            workers.apply([(0, reset_env, (1,))])
    finally:
        workers.close()


def test_an_environment_that_cannot_be_built_fails_at_the_start():
    with pytest.raises(RuntimeError, match=r"worker 0 failed while starting: OSError: no such game data"):
        EnvWorkers(broken_env, 1, workers=1)


def test_a_negative_number_of_workers_is_refused():
    with pytest.raises(ValueError, match="env_workers must be 0"):
        make_pool(MAKE, 2, workers=-1)


def test_workers_outlive_a_ctrl_c_so_the_run_can_finish_its_update():
    """Ctrl-C signals the whole process group; training then finishes the update and checkpoints."""
    import signal

    workers = EnvWorkers(MAKE, 2, workers=2)
    try:
        for process in workers.processes:
            os.kill(process.pid, signal.SIGINT)
        assert len(workers.apply([(0, reset_env, (1,)), (1, reset_env, (2,))])) == 2
    finally:
        workers.close()
