"""Where environments live: in this process, or spread over worker processes that step them in parallel.

A pool runs a batch of calls `(environment index, function, args)`, each `function(env, *args)`,
and returns their results in order. `LocalEnvs` runs them one after the other here; `EnvWorkers`
(`env_workers: K`) gives each of K processes a contiguous slice of the environments, sends every
worker its share of a batch in one message and gathers the answers, so a slow game (ALFWorld's
text engine) steps K environments at once while the batch waits for the slowest. Results are the
same either way: every environment is built, seeded and stepped by the same code in the same order,
and nothing the policy draws (torch's generator) is touched by stepping. Messages travel between
this program's own processes (pickled over pipes, never read from files).

The functions below are what `Lockstep` and `Rollouts` run on an environment (a `TextActionWrapper`),
defined at module level so that a worker can receive them.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import traceback
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import gymnasium as gym

from vlmrl.games.parsing import format_answer

Call = tuple[int, Callable[..., Any], tuple]
"""(environment index, function(env, *args), args)."""


class EnvPool(Protocol):
    def __len__(self) -> int: ...

    def apply(self, calls: Sequence[Call]) -> list[Any]:
        """Each call's result, in the order of `calls` (an environment's calls run in that order)."""
        ...

    def close(self) -> None: ...


class LocalEnvs:
    """Environments in this process."""

    def __init__(self, envs: Sequence[gym.Env]) -> None:
        self.envs = list(envs)

    def __len__(self) -> int:
        return len(self.envs)

    def __getitem__(self, index: int) -> gym.Env:
        return self.envs[index]

    def __iter__(self):
        return iter(self.envs)

    def apply(self, calls: Sequence[Call]) -> list[Any]:
        return [function(self.envs[index], *args) for index, function, args in calls]

    def close(self) -> None:
        pass


class EnvWorkers:
    """`num_envs` environments, each built by `make_env()`, over `workers` processes (fewer when there
    are fewer environments): environment i lives in worker i * workers // num_envs."""

    def __init__(self, make_env: Callable[[], gym.Env], num_envs: int, workers: int) -> None:
        if num_envs < 1 or workers < 1:
            raise ValueError(f"need at least one environment and one worker, not {num_envs} and {workers}")
        workers = min(workers, num_envs)
        self.num_envs = num_envs
        self.owner = [i * workers // num_envs for i in range(num_envs)]
        self.first = [self.owner.index(w) for w in range(workers)]
        context = multiprocessing.get_context("spawn")  # no fork of a process that holds torch's threads
        self.connections, self.processes = [], []
        try:
            for w in range(workers):
                ours, theirs = context.Pipe()
                count = self.owner.count(w)
                process = context.Process(target=serve, args=(theirs, make_env, count), daemon=True, name=f"env-{w}")
                process.start()
                theirs.close()
                self.connections.append(ours)
                self.processes.append(process)
            self._gather(range(workers), "starting")  # each worker says once its environments are built
        except BaseException:
            self.close()
            raise

    def __len__(self) -> int:
        return self.num_envs

    def apply(self, calls: Sequence[Call]) -> list[Any]:
        shares: dict[int, list[tuple[int, Callable[..., Any], tuple]]] = {}
        order: dict[int, list[int]] = {}
        for position, (index, function, args) in enumerate(calls):
            w = self.owner[index]
            shares.setdefault(w, []).append((index - self.first[w], function, args))
            order.setdefault(w, []).append(position)
        for w, share in shares.items():
            self._send(w, share)
        results: list[Any] = [None] * len(calls)
        for w, answers in zip(shares, self._gather(shares, "stepping"), strict=True):
            for position, answer in zip(order[w], answers, strict=True):
                results[position] = answer
        return results

    def close(self) -> None:
        for connection in self.connections:
            try:
                connection.send(None)
            except OSError:
                pass  # already gone
        for process in self.processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join()
        for connection in self.connections:
            connection.close()
        self.connections, self.processes = [], []

    def _send(self, w: int, message: Any) -> None:
        try:
            self.connections[w].send(message)
        except OSError:
            raise self._dead(w, "stepping") from None

    def _gather(self, workers, doing: str) -> list[Any]:
        """Every listed worker's answer; its error, or its death, as one RuntimeError naming it. All
        answers are read first, so no worker is left with an unread one."""
        answers, failure = [], None
        for w in workers:
            try:
                status, payload = self.connections[w].recv()
            except (EOFError, OSError):
                failure = failure or self._dead(w, doing)
                answers.append(None)
                continue
            if status == "invalid" and failure is None:  # bad input (a saved state that cannot replay): as here
                failure = ValueError(payload)
            elif status == "error" and failure is None:
                failure = RuntimeError(f"an environment of worker {w} failed while {doing}: {payload}")
            answers.append(payload)
        if failure is not None:
            raise failure
        return answers

    def _dead(self, w: int, doing: str) -> RuntimeError:
        process = self.processes[w]
        process.join(timeout=1)
        what = (
            "a script that starts environment workers must do so under `if __name__ == '__main__':` "
            "(they are spawned: each imports the script; its own error is printed above)"
            if doing == "starting"
            else "its environments are lost: resume the run from its last checkpoint"
        )
        return RuntimeError(
            f"environment worker {w} (pid {process.pid}) died while {doing} (exit code {process.exitcode}); {what}"
        )


def serve(connection, make_env: Callable[[], gym.Env], count: int) -> None:
    """A worker: build `count` environments, then run each batch of calls it is sent until None (or
    until its parent is gone: the pipe's end). Ctrl-C reaches the whole process group; the parent
    then finishes its update and checkpoints, with its workers still serving it, so they ignore it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        envs = [make_env() for _ in range(count)]
    except Exception as error:  # noqa: BLE001 (any failure is reported to the parent, which raises it)
        connection.send(("error", describe(error)))
        return
    connection.send(("ok", None))
    while True:
        try:
            calls = connection.recv()
        except EOFError:
            return
        if calls is None:
            return
        try:
            connection.send(("ok", [function(envs[index], *args) for index, function, args in calls]))
        except ValueError as error:
            connection.send(("invalid", str(error)))
        except Exception as error:  # noqa: BLE001 (as above: the parent raises it, naming the worker)
            connection.send(("error", describe(error)))


def describe(error: Exception) -> str:
    """An error in a worker as one line, with the place it was raised."""
    where = traceback.extract_tb(error.__traceback__)[-1] if error.__traceback__ else None
    place = f" ({os.path.basename(where.filename)}:{where.lineno})" if where else ""
    return f"{type(error).__name__}: {error}{place}"


def make_pool(make_env: Callable[[], gym.Env], num_envs: int, workers: int = 0) -> EnvPool:
    """`num_envs` environments here (`workers` 0) or over that many worker processes."""
    if workers < 0:
        raise ValueError(f"env_workers must be 0 (in this process) or more, not {workers}")
    if workers == 0:
        return LocalEnvs([make_env() for _ in range(num_envs)])
    return EnvWorkers(make_env, num_envs, workers)


# ---------------------------------------------------------------- what runs on an environment
def reset_env(env: gym.Env, seed: int) -> tuple[Any, dict[str, Any]]:
    return env.reset(seed=seed)


def step_env(env: gym.Env, answer: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
    return env.step(answer)


def env_state(env: gym.Env) -> tuple[dict[str, Any], list[int]]:
    """A text environment's state beyond its episode: the generator of random fallback actions, and
    its step counters."""
    return env.fallback_rng.bit_generator.state, [env.steps, env.invalid_steps]


def set_env_state(env: gym.Env, fallback_rng: dict[str, Any], counters: Sequence[int]) -> None:
    env.fallback_rng.bit_generator.state = fallback_rng
    env.steps, env.invalid_steps = counters


def replay(env: gym.Env, index: int, seed: int, actions: Sequence[int | None]) -> tuple[Any, dict[str, Any]]:
    """Environment `index` back in the state its episode reached: its deal, then its actions (ids of
    the actions each state offered; None: an unparseable answer). ValueError where a saved action
    cannot have been taken there."""
    obs, info = env.reset(seed=seed)
    for step, action in enumerate(actions):
        legal = env.task.legal_actions(info)
        if action is not None and action >= len(legal):
            raise ValueError(
                f"environment {index}'s action {step} has id {action}, but its state offers {len(legal)} actions"
            )
        text = format_answer({"action": legal[action]}) if action is not None else ""
        obs, _, terminated, truncated, info = env.step(text)
        if (terminated or truncated) and step + 1 < len(actions):
            raise ValueError(f"environment {index}'s episode ends at action {step}, before its saved actions do")
    return obs, info
