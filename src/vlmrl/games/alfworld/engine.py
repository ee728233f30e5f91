"""alfworld's text engine (TextWorld over PDDL) for one game at a time, with alfworld's expert.

The engine is alfworld's own stack, the one `alfworld-generate` and `AlfredTWEnv` build:
textworld's `PddlEnv` under alfworld's `AlfredDemangler` (object ids -> "apple 1"),
`AlfredInfos` and `AlfredExpert`, asked for admissible commands, `won` and the PDDL facts.
It runs synchronously in this process (no gym batching, no subprocesses).

The expert is alfworld's: ``"handcoded"`` (the default, and alfworld's: it searches the
receptacles like a player who does not know where things are) or ``"planner"`` (Fast
Downward's shortest plan from the true state, which knows where everything is). The
handcoded expert gives up on some states it did not expect (after a policy's detours); the
planner then supplies the action, so the expert always has one.

Side effects kept inside the engine (`_inside_alfworld`): the handcoded expert draws from
Python's global `random`, so the engine runs it on a private random state seeded at each
reset (an episode's expert is reproducible and the caller's `random` stream is left alone);
Fast Downward's translator overwrites `sys.argv`, which the engine restores.

Speed: textworld translates a game's PDDL twice at load and twice again at every reset, and
re-parses the same grammar strings for every admissible command at every step. Both are pure
functions of their text, so while the engine runs it memoises them (the parsed symbols,
which textworld mutates, are handed out as fresh copies): a reset of a loaded game drops from
~0.5 s to ~0.05 s and a step to about half. `test_engine_matches_alfworlds_own_stack` checks
that the engine still says exactly what alfworld's unmodified stack says. Like alfworld
itself, an engine is not thread-safe.
"""

from __future__ import annotations

import copy
import functools
import random
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vlmrl.games.alfworld.conditions import Fact
from vlmrl.games.alfworld.data import require_alfworld

EXPERTS = ("handcoded", "planner")

_TASK_LINE = re.compile(r"\s*Your task is to:\s*(.*?)\s*$", re.DOTALL)
_WELCOME = "-= Welcome to TextWorld, ALFRED! =-"


@dataclass(frozen=True)
class EngineState:
    """What the text engine reports after a reset or a step."""

    feedback: str
    """The game's text answer to the last command (the room description after a reset)."""
    admissible: tuple[str, ...]
    """The commands the game accepts now, sorted as alfworld sorts them."""
    won: bool
    facts: tuple[Fact, ...]
    """The PDDL state, as (predicate, demangled argument names)."""
    expert_plan: tuple[str, ...]
    """alfworld's expert: its next command first (the planner gives its whole remaining plan)."""
    goal_rate: float | None = None
    """The engine's own goal-condition success rate (THOR reports one); None: computed from `facts`."""


def split_intro(feedback: str) -> tuple[str, str]:
    """(room description, task) from the text a game opens with."""
    text = feedback.replace(_WELCOME, "").strip()
    match = _TASK_LINE.search(text)
    if match is None:
        return text, ""
    return text[: match.start()].strip(), match.group(1).strip().rstrip(".")


class Engine:
    """One alfworld text game, loaded on demand and replayed from its start by `reset`."""

    def __init__(self, expert: str = "handcoded") -> None:
        if expert not in EXPERTS:
            raise ValueError(f"expert must be one of {EXPERTS}, not {expert!r}")
        require_alfworld()
        import textworld
        from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
        from textworld.envs import PddlEnv

        infos = textworld.EnvInfos(admissible_commands=True, won=True, facts=True, extras=["gamefile", "expert_plan"])
        self._pddl = PddlEnv(infos)
        self._env = _make_expert(AlfredInfos(AlfredDemangler(self._pddl, shuffle=False)), expert)
        self.expert = expert
        self._loaded: Path | None = None
        self._random_state = random.Random(0).getstate()
        self.state: EngineState | None = None

    def reset(self, game: Path, seed: int) -> EngineState:
        """Start `game` (a ``game.tw-pddl`` next to its ``traj_data.json``) from its initial state."""
        self._random_state = random.Random(seed).getstate()
        with self._inside_alfworld():
            if self._loaded != game:
                self._env.load(str(game))
                self._loaded = game
            self.state = self._convert(self._env.reset())
        return self.state

    def step(self, command: str) -> EngineState:
        """Apply a command; one the game does not accept changes nothing ("Nothing happens.")."""
        if self.state is None:
            raise RuntimeError("reset() the engine before step()")
        with self._inside_alfworld():
            game_state, _, _ = self._env.step(command)
            self.state = self._convert(game_state)
        return self.state

    def expert_command(self) -> str:
        """The expert's next command, always an admissible one."""
        if self.state is None:
            raise RuntimeError("reset() the engine before asking the expert")
        plan = self.state.expert_plan
        if plan and plan[0] in self.state.admissible:
            return plan[0]
        replanned = self.replan()
        if replanned and replanned[0] in self.state.admissible:
            return replanned[0]
        return "look"

    def replan(self) -> list[str]:
        """The planner's shortest plan from the current state (empty when won or unsolvable)."""
        with self._inside_alfworld():
            return list(self._pddl._pddl_state.replan(self._pddl._entity_infos))

    def _convert(self, game_state: Any) -> EngineState:
        facts = tuple(
            (fact.name, tuple(variable.name.strip() for variable in fact.arguments)) for fact in game_state["facts"]
        )
        return EngineState(
            feedback=str(game_state["feedback"]),
            admissible=tuple(game_state["admissible_commands"]),
            won=bool(game_state["won"]),
            facts=facts,
            expert_plan=tuple(game_state.get("extra.expert_plan") or ()),
        )

    @contextmanager
    def _inside_alfworld(self) -> Iterator[None]:
        """Run alfworld with the engine's random state and memoised parsing; restore the caller's world after."""
        import fast_downward
        from textworld.envs.pddl import textgen

        saved, argv = random.getstate(), list(sys.argv)
        translate, parse = fast_downward.pddl2sas, textgen._parse_and_convert
        random.setstate(self._random_state)
        fast_downward.pddl2sas, textgen._parse_and_convert = _memoised_pddl2sas, _memoised_parse
        try:
            yield
        finally:
            fast_downward.pddl2sas, textgen._parse_and_convert = translate, parse
            sys.argv[:] = argv
            self._random_state = random.getstate()
            random.setstate(saved)


def _memoised_parse(text: str, rule_name: str = "symbols", **kwargs: Any) -> Any:
    """textworld's parse of a grammar string into symbols, which it then mutates: a fresh copy each call."""
    return copy.deepcopy(_parsed_symbols(text, rule_name))


@functools.lru_cache(maxsize=4096)
def _parsed_symbols(text: str, rule_name: str) -> Any:
    from textworld.envs.pddl.textgen import _PARSER, _Converter

    return _Converter().walk(_PARSER.parse(text, rule_name=rule_name))


@functools.lru_cache(maxsize=16)
def _memoised_pddl2sas(domain: str, problem: str, verbose: bool = False, optimize: bool = False) -> Any:
    """Fast Downward's PDDL -> SAS translation, a pure function of its text (textworld only reads the result)."""
    from fast_downward.interface import pddl2sas

    return pddl2sas(domain, problem, verbose=verbose, optimize=optimize)


def as_handcoded_expert_reads(command: str) -> str:
    """alfworld's handcoded expert tracks what it carries by the word "put", while alfworld's
    grammar writes that command "move X to Y"; unless shown "put X to Y", the expert believes
    it still holds what it put down and walks back to return it, forever (its pick-two policy
    never finishes, nor does any episode after a detour with a wrong object)."""
    return "put " + command[len("move ") :] if command.startswith("move ") else command


def _make_expert(env: Any, expert: str) -> Any:
    """alfworld's `AlfredExpert`, with two repairs: the handcoded expert reads put-down commands
    as it expects (`as_handcoded_expert_reads`), and an expert giving up leaves an empty plan
    instead of raising out of a step that has already been applied."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredExpert

    class _Expert(AlfredExpert):
        def step(self, command: str):
            self.state, reward, done = textworld.core.Wrapper.step(self, command)
            self.prev_command = as_handcoded_expert_reads(str(command))
            self._gather_infos()
            return self.state, reward, done

        def _gather_infos(self) -> None:
            try:
                super()._gather_infos()
            except Exception:  # noqa: BLE001 - the handcoded expert signals "I give up" with bare Exceptions
                self.state["extra.expert_plan"] = []

    return _Expert(env, expert_type=expert)
