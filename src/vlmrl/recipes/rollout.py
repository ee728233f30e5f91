"""Collecting experience: N environments stepped in lockstep, one batched `generate` per step.

Each stored sample keeps its own prompt ids and image (the original re-scored every sample
under the first prompt of the run). Episodes that end are reset at once with a fresh seed
from the run's seed stream. A truncated episode bootstraps from the value of its last
observation; a terminated one does not.

With group-relative advantages (GRPO, GiGPO) an update holds whole episodes instead: rounds in which
every environment plays one episode, the environments in groups of G that are dealt the same seed
(`collect_groups`). Groups are counted over all ranks, so a group may span ranks; its seed comes from
a stream every rank draws alike.

The state of the environments is saved as what reproduces it: each environment's episode
seed and the actions taken since, replayed on resume. This works for any environment whose
`reset(seed=...)` is deterministic, without pickling environments. A saved state is checked
before it is used (`RolloutsState`, a strict schema, then a replay that every action id is legal
where it was taken), so a damaged or edited one is a ValueError naming what is wrong.
"""

from __future__ import annotations

import functools
import hashlib
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from vlmrl.evaluation.episodes import Lockstep, Track, Transition
from vlmrl.games import EVAL_SEED_BASE, Episode, Task, make_text_env
from vlmrl.games.pool import env_state, make_pool, replay, set_env_state
from vlmrl.infra.distributed import ALONE, World
from vlmrl.policy.policy import Policy, Sample


class Saved(BaseModel):
    """The schema of a saved structure, read back exactly as written: no coercion, no unknown keys."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)


class _PCG64Words(Saved):
    state: Annotated[int, Field(ge=0, lt=1 << 128)]
    inc: Annotated[int, Field(ge=0, lt=1 << 128)]


class PCG64State(Saved):
    """numpy's `default_rng().bit_generator.state`."""

    bit_generator: Literal["PCG64"]
    state: _PCG64Words
    has_uint32: Annotated[int, Field(ge=0, le=1)]
    uinteger: Annotated[int, Field(ge=0, lt=1 << 32)]


class TrackState(Saved):
    seed: Annotated[int, Field(ge=0, lt=EVAL_SEED_BASE)]
    actions: list[Annotated[int, Field(ge=0)] | None]
    ret: float
    invalid: Annotated[int, Field(ge=0)]


class RolloutsState(Saved):
    """`Rollouts.state_dict()`: the seed stream, and per environment its episode so far."""

    seed_stream: PCG64State
    tracks: list[TrackState]
    fallback_rngs: list[PCG64State]
    counters: list[Annotated[list[Annotated[int, Field(ge=0)]], Field(min_length=2, max_length=2)]]
    group_stream: PCG64State | None = None
    """The deals of groups (runs with group-relative advantages; absent in earlier checkpoints)."""


class EpisodeState(Saved):
    """One finished episode of `EpisodeWindow.state_dict()`."""

    success: bool
    ret: float
    length: Annotated[int, Field(ge=1)]
    invalid: Annotated[int, Field(ge=0)]
    task_type: str | None = None


def schema_error(error: ValidationError) -> str:
    """A pydantic error as one line: where in the saved state, and what is wrong there."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the top level"
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{where}: {first['msg']}{more}"


@dataclass
class RolloutBuffer:
    """T steps x N environments, time-major; `samples[t * N + i]` is environment i at step t."""

    samples: list[Sample]
    rewards: torch.Tensor
    values: torch.Tensor
    next_values: torch.Tensor
    terminated: torch.Tensor
    truncated: torch.Tensor
    invalid: torch.Tensor
    generated_tokens: int = 0
    generation_seconds: float = 0.0
    actions: list[str | None] = field(default_factory=list)
    """The action each sample's answer was read as (None: unparseable), sample by sample."""
    env_seconds: float = 0.0
    """Time spent stepping and resetting the environments (their answers parsed, the games played)."""


@dataclass
class GroupBuffer:
    """Whole episodes of groups dealt alike, one entry per step, each episode's steps in time order.

    `episode`, `group` and `state` are keys over every rank's part of the update: the episode,
    the group of episodes dealt the same seed, and a hash of the state the step saw (its image and
    prompt). Steps on this rank only; `collect_groups` says how many all ranks took together."""

    samples: list[Sample]
    rewards: torch.Tensor
    episode: torch.Tensor
    group: torch.Tensor
    state: torch.Tensor
    invalid: torch.Tensor
    steps_all_ranks: int
    generated_tokens: int = 0
    generation_seconds: float = 0.0
    actions: list[str | None] = field(default_factory=list)
    """The action each sample's answer was read as (None: unparseable), sample by sample."""
    env_seconds: float = 0.0
    """Time spent stepping and resetting the environments."""

    @property
    def values(self) -> torch.Tensor:
        """The critic's values at collection (logged; group advantages do not use them)."""
        return torch.tensor([sample.value for sample in self.samples])


def state_key(observation: np.ndarray, prompt: str) -> int:
    """A 63-bit key of what a step saw: steps with equal images and prompts share it (GiGPO's step groups)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(np.ascontiguousarray(observation).tobytes())
    digest.update(prompt.encode())
    return int.from_bytes(digest.digest(), "little") >> 1


class Rollouts:
    def __init__(
        self,
        task: Task,
        num_envs: int,
        seed: int,
        invalid_action: str | None = None,
        invalid_penalty: float = -1.0,
        cot: bool = True,
        env_kwargs: dict[str, Any] | None = None,
        rank: int = 0,
        world_size: int = 1,
        env_workers: int = 0,
    ) -> None:
        self.task, self.cot = task, cot
        self.rank, self.world_size = rank, world_size
        make_env = functools.partial(make_text_env, task, env_kwargs, invalid_action, invalid_penalty)
        self.envs = make_pool(make_env, num_envs, env_workers)
        """The environments: here, or over `env_workers` processes (the same results)."""
        entropy = [seed, 0x5EED] if world_size == 1 else [seed, 0x5EED, rank]
        self.seed_stream = np.random.default_rng(np.random.SeedSequence(entropy))
        self.group_stream = np.random.default_rng(np.random.SeedSequence([seed, 0x6209]))  # alike on every rank
        self.games = Lockstep(self.envs, [self._seeds() for _ in range(num_envs)])

    def _seeds(self) -> Iterator[int]:
        """Episode seeds without end, from this rank's stream (drawn as episodes end, in order). Rank r
        of W deals only seeds equal to r modulo W, so no two ranks ever deal the same deal; one
        process deals from all of 0..2^30-1."""
        while True:
            yield int(self.seed_stream.integers(EVAL_SEED_BASE // self.world_size)) * self.world_size + self.rank

    @property
    def current(self) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Each environment's (observation, info)."""
        return self.games.states()

    def prompts(self) -> list[str]:
        return [self.task.prompt(info, cot=self.cot) for _, info in self.current]

    def collect(
        self,
        policy: Policy,
        steps: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        world: World = ALONE,
    ) -> tuple[RolloutBuffer, list[Episode]]:
        """`steps` lockstep steps of every environment; the episodes that finished meanwhile.
        `world`: the ranks whose forward passes go together when the policy is sharded."""
        n = len(self.envs)
        shape = (steps, n)
        rewards, values, next_values = torch.zeros(shape), torch.zeros(shape), torch.zeros(shape)
        terminated = torch.zeros(shape, dtype=torch.bool)
        truncated = torch.zeros(shape, dtype=torch.bool)
        invalid = torch.zeros(shape, dtype=torch.bool)
        samples: list[Sample] = []
        actions: list[str | None] = [None] * (steps * n)
        finished: list[Episode] = []
        tokens, seconds, env_seconds = 0, 0.0, 0.0
        for t in range(steps):
            started = time.perf_counter()
            batch = policy.generate(
                [obs for obs, _ in self.current],
                self.prompts(),
                temperature=temperature,
                top_p=top_p,
                max_new_tokens=max_new_tokens,
            )
            seconds += time.perf_counter() - started
            tokens += sum(len(s.response_ids) for s in batch)
            samples.extend(batch)
            truncated_finals: list[tuple[int, np.ndarray, dict[str, Any]]] = []
            started = time.perf_counter()
            transitions = self.games.step([sample.text for sample in batch])
            env_seconds += time.perf_counter() - started
            for step, sample in zip(transitions, batch, strict=True):
                i = step.index
                rewards[t, i], values[t, i] = step.reward, sample.value
                terminated[t, i], truncated[t, i] = step.terminated, step.truncated and not step.terminated
                invalid[t, i] = step.invalid
                actions[t * n + i] = self.action_name(step)
                if step.episode is not None:
                    finished.append(step.episode)
                if step.truncated and not step.terminated:
                    truncated_finals.append((i, step.next_observation, step.next_info))
            if world.any(bool(truncated_finals)) if policy.sharded else truncated_finals:
                bootstrap = policy.values(
                    [obs for _, obs, _ in truncated_finals],
                    [self.task.prompt(info, cot=self.cot) for _, _, info in truncated_finals],
                )
                for (i, _, _), value in zip(truncated_finals, bootstrap.tolist(), strict=True):
                    next_values[t, i] = value
        last_values = policy.values([obs for obs, _ in self.current], self.prompts()).cpu()
        for t in range(steps):
            following = values[t + 1] if t + 1 < steps else last_values
            ended = terminated[t] | truncated[t]
            next_values[t] = torch.where(ended, next_values[t], following)
        buffer = RolloutBuffer(
            samples, rewards, values, next_values, terminated, truncated, invalid, tokens, seconds, actions, env_seconds
        )
        return buffer, finished

    @staticmethod
    def action_name(step: Transition) -> str | None:
        """What the answer of a step was read as (None: unparseable, whatever the game did instead)."""
        name = step.next_info.get("action_name")
        return None if step.invalid or name is None else str(name)

    def collect_groups(
        self,
        policy: Policy,
        min_steps: int,
        group_size: int,
        temperature: float,
        top_p: float,
        max_new_tokens: int,
        world: World = ALONE,
    ) -> tuple[GroupBuffer, list[Episode]]:
        """Rounds of whole episodes until all ranks together took at least `min_steps` steps. In a round
        every environment plays one episode; environments g*G .. g*G+G-1 (counted over the ranks, rank
        by rank) form group g and are dealt the same fresh seed. No critic value is computed."""
        n = len(self.envs)
        groups_per_round = n * world.size // group_size
        samples: list[Sample] = []
        rewards: list[float] = []
        episode: list[int] = []
        group: list[int] = []
        state: list[int] = []
        invalid: list[bool] = []
        actions: list[str | None] = []
        finished: list[Episode] = []
        tokens, seconds, env_seconds, steps_all_ranks, rounds = 0, 0.0, 0.0, 0, 0
        while steps_all_ranks < min_steps:
            seeds = self.group_stream.integers(EVAL_SEED_BASE, size=groups_per_round).tolist()
            first = rounds * n * world.size + world.rank * n  # global id of this rank's first environment
            slots = [(world.rank * n + i) // group_size for i in range(n)]  # each environment's group this round
            started = time.perf_counter()
            games = Lockstep(self.envs, [[seeds[slot]] for slot in slots])
            env_seconds += time.perf_counter() - started
            taken = 0
            while world.any(bool(games.active)) if policy.sharded else games.active:
                current = games.states()
                prompts = [self.task.prompt(info, cot=self.cot) for _, info in current]
                started = time.perf_counter()
                batch = (
                    policy.generate(
                        [obs for obs, _ in current],
                        prompts,
                        temperature=temperature,
                        top_p=top_p,
                        max_new_tokens=max_new_tokens,
                    )
                    if prompts or policy.sharded
                    else []
                )
                seconds += time.perf_counter() - started
                tokens += sum(len(s.response_ids) for s in batch)
                samples.extend(batch)
                started = time.perf_counter()
                transitions = games.step([sample.text for sample in batch])
                env_seconds += time.perf_counter() - started
                for step, prompt in zip(transitions, prompts, strict=True):
                    episode.append(first + step.index)
                    group.append(rounds * groups_per_round + slots[step.index])
                    state.append(state_key(step.observation, prompt))
                    rewards.append(step.reward)
                    invalid.append(step.invalid)
                    actions.append(self.action_name(step))
                    if step.episode is not None:
                        finished.append(step.episode)
                taken += len(batch)
            rounds += 1
            steps_all_ranks += int(world.sum(torch.tensor(taken))) if world.distributed else taken
        buffer = GroupBuffer(
            samples,
            torch.tensor(rewards, dtype=torch.float32),
            torch.tensor(episode, dtype=torch.long),
            torch.tensor(group, dtype=torch.long),
            torch.tensor(state, dtype=torch.long),
            torch.tensor(invalid, dtype=torch.bool),
            steps_all_ranks,
            tokens,
            seconds,
            actions,
            env_seconds,
        )
        return buffer, finished

    # ---------------------------------------------------------------- save and restore
    def state_dict(self) -> dict[str, Any]:
        """JSON-able: the seed stream, and per environment its episode seed and actions so far."""
        states = self.envs.apply([(i, env_state, ()) for i in range(len(self.envs))])
        return {
            "seed_stream": self.seed_stream.bit_generator.state,
            "tracks": [asdict(track) for track in self.games.tracks],
            "fallback_rngs": [fallback_rng for fallback_rng, _ in states],
            "counters": [counters for _, counters in states],
            "group_stream": self.group_stream.bit_generator.state,
        }

    def check_state(self, state: Any) -> None:
        """ValueError unless `state` is one `state_dict` of rollouts like these could have written:
        the schema, one entry per environment, and every episode replays (each action id legal in
        the state it was taken in, no episode over before its actions are)."""
        self._check_schema(state)
        self._replay(state["tracks"])

    def _check_schema(self, state: Any) -> None:
        try:
            RolloutsState.model_validate(state)
        except ValidationError as error:
            raise ValueError(f"rollouts.{schema_error(error)}") from None
        for key in ("tracks", "fallback_rngs", "counters"):
            if len(state[key]) != len(self.envs):
                raise ValueError(f"rollouts.{key} has {len(state[key])} environments, this run {len(self.envs)}")

    def _replay(self, tracks: list[dict[str, Any]]) -> list[tuple[np.ndarray, dict[str, Any]]]:
        """Every environment back in the state its track reached (its deal, then its actions), in one batch."""
        return self.envs.apply([(i, replay, (i, t["seed"], t["actions"])) for i, t in enumerate(tracks)])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild every environment's current episode by replaying its actions (a ValueError, as from
        `check_state`, for a state these rollouts cannot have written)."""
        self._check_schema(state)
        self.seed_stream.bit_generator.state = state["seed_stream"]
        if state.get("group_stream") is not None:
            self.group_stream.bit_generator.state = state["group_stream"]
        for i, (track, current) in enumerate(zip(state["tracks"], self._replay(state["tracks"]), strict=True)):
            self.games.restore(i, Track(**track), *current)
        self.envs.apply(
            [(i, set_env_state, (state["fallback_rngs"][i], state["counters"][i])) for i in range(len(self.envs))]
        )

    def close(self) -> None:
        """Stop the environments' worker processes (none without env_workers)."""
        self.envs.close()


class EpisodeWindow:
    """The last K finished episodes, for the training success rate."""

    def __init__(self, size: int) -> None:
        self.episodes: deque[Episode] = deque(maxlen=size)

    def extend(self, episodes: list[Episode]) -> None:
        self.episodes.extend(episodes)

    def summary(self) -> dict[str, float]:
        if not self.episodes:
            return {}
        return {
            "charts/success_rate": float(np.mean([e.success for e in self.episodes])),
            "charts/episodic_return": float(np.mean([e.ret for e in self.episodes])),
            "charts/episode_length": float(np.mean([e.length for e in self.episodes])),
        }

    def state_dict(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in asdict(e).items() if k != "frames"} for e in self.episodes]

    def check_state(self, state: Any) -> None:
        """ValueError unless `state` is a `state_dict` of a window this size."""
        if not isinstance(state, list):
            raise ValueError(f"window must be a list of episodes, not {type(state).__name__}")
        if len(state) > (self.episodes.maxlen or 0):
            raise ValueError(f"window holds {len(state)} episodes, more than its size {self.episodes.maxlen}")
        for i, episode in enumerate(state):
            try:
                EpisodeState.model_validate(episode)
            except ValidationError as error:
                raise ValueError(f"window.{i}.{schema_error(error)}") from None

    def load_state_dict(self, state: list[dict[str, Any]]) -> None:
        self.check_state(state)
        self.episodes.clear()
        self.episodes.extend(Episode(**e) for e in state)
