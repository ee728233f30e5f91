"""The one episode loop: environments stepped in lockstep, each answer in, each transition out, every
episode's bookkeeping (seed, actions, return, length, invalid answers, success, task type) kept here.

Training rollouts, held-out evaluation, `vlmrl play` and SFT's demonstrations all play through
`Lockstep`; they differ only in who answers (a batched `generate`, an agent, a behaviour policy)
and in where each environment's next seed comes from (a run's seed stream without end, one fixed
deal, a range of deals). An environment whose seeds run out goes idle; the loop is over when every
environment is.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym

from vlmrl.games import Episode
from vlmrl.games.pool import EnvPool, LocalEnvs, reset_env, step_env


@dataclass
class Track:
    """What reproduces one environment's current episode (its seed, then its actions), and its totals."""

    seed: int
    actions: list[int | None] = field(default_factory=list)
    """Action ids as taken: the text wrapper's parse (None: an unparseable answer), or the id itself
    for an environment stepped with ids."""
    ret: float = 0.0
    invalid: int = 0


@dataclass
class Transition:
    """One step of one environment."""

    index: int
    """Which environment."""
    observation: Any
    info: dict[str, Any]
    """What the answer was given for."""
    answer: Any
    reward: float
    next_observation: Any
    next_info: dict[str, Any]
    """What the step led to: the final observation and info when the episode ended."""
    terminated: bool
    truncated: bool
    episode: Episode | None = None
    """The episode this step finished, if it did."""

    @property
    def invalid(self) -> bool:
        return bool(self.next_info.get("invalid", False))


class Lockstep:
    """Environments stepped together; `seeds[i]` deals environment i's episodes, one seed each.

    Each environment is reset as soon as its episode ends, with its next seed (drawn only then, so a
    shared seed stream is drawn in the order episodes end), or goes idle when it has none. `envs` is
    a list of environments or a pool (`vlmrl.games.pool`: worker processes step them in parallel, with
    the same results); every step and every round of resets is one batch of the pool's calls.
    """

    def __init__(self, envs: Sequence[gym.Env] | EnvPool, seeds: Sequence[Iterable[int]]) -> None:
        if len(envs) != len(seeds):
            raise ValueError(f"{len(envs)} environments but {len(seeds)} seed sources")
        self.pool: EnvPool = envs if hasattr(envs, "apply") else LocalEnvs(envs)  # type: ignore[arg-type]
        self._seeds: list[Iterator[int]] = [iter(source) for source in seeds]
        self.tracks: list[Track] = [Track(seed=0) for _ in seeds]
        self.current: list[tuple[Any, dict[str, Any]] | None] = [None] * len(seeds)
        self._start(range(len(seeds)))

    @property
    def active(self) -> list[int]:
        """The environments playing an episode, in order."""
        return [index for index, now in enumerate(self.current) if now is not None]

    def states(self) -> list[tuple[Any, dict[str, Any]]]:
        """(observation, info) of each active environment, in order: what the next answers are for."""
        return [now for now in self.current if now is not None]

    def step(self, answers: Sequence[Any]) -> list[Transition]:
        """Step each active environment with its answer (in the order of `active`)."""
        active = self.active
        if len(answers) != len(active):
            raise ValueError(f"{len(answers)} answers for {len(active)} active environments")
        transitions, ended = [], []
        results = self.pool.apply([(index, step_env, (answer,)) for index, answer in zip(active, answers, strict=True)])
        for index, answer, result in zip(active, answers, results, strict=True):
            observation, info = self.current[index]
            next_observation, reward, terminated, truncated, next_info = result
            track = self.tracks[index]
            track.actions.append(next_info.get("action", answer))
            track.ret += float(reward)
            track.invalid += int(bool(next_info.get("invalid", False)))
            transition = Transition(
                index, observation, info, answer, float(reward), next_observation, next_info, terminated, truncated
            )
            if terminated or truncated:
                transition.episode = Episode(
                    bool(next_info["success"]),
                    track.ret,
                    len(track.actions),
                    track.invalid,
                    task_type=next_info.get("task_type"),
                )
                ended.append(index)
            else:
                self.current[index] = (next_observation, next_info)
            transitions.append(transition)
        self._start(ended)
        return transitions

    def restore(self, index: int, track: Track, observation: Any, info: dict[str, Any]) -> None:
        """Environment `index` is back in the middle of the episode `track` describes (a resume's replay)."""
        self.tracks[index] = track
        self.current[index] = (observation, info)

    def _start(self, indices: Iterable[int]) -> None:
        """Each environment's next episode (seeds drawn in the order of `indices`), all reset in one batch."""
        resets = []
        for index in indices:
            seed = next(self._seeds[index], None)
            self.current[index] = None
            if seed is not None:
                self.tracks[index] = Track(seed=seed)
                resets.append((index, reset_env, (seed,)))
        for (index, _, _), state in zip(resets, self.pool.apply(resets), strict=True):
            self.current[index] = state
