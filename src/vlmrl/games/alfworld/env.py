"""ALFWorld: household tasks in text (alfworld's TextWorld engine), seen as an image.

Games: a folder in alfworld's layout (`vlmrl.games.alfworld.data`): ``data=None`` reads
``$ALFWORLD_DATA`` when it holds games (`alfworld-download`) and vlmrl's shipped games
otherwise; ``split`` is ``train``, ``valid_seen`` (held-out games, training rooms) or
``valid_unseen`` (held-out rooms); ``task_types`` narrows the six types. `reset(seed=...)`
picks the game from the split with the environment's generator (``options={"game": i}``
picks game i, or a game by its name), so the same seed plays the same game.
Observation: a 300x300 image of the task and the game's latest text (`render`); `info`
carries the text itself: ``observation``, ``task``, ``admissible_commands``, ``task_type``,
``won``, ``goal_condition_success_rate``, ``last_action``, ``admissible`` (whether the last
command was), ``game`` and ``step``; ``success`` (= won) once the episode ends.
Actions: an index into the current ``admissible_commands``, or a command string. Anything
else (a command the game does not accept, an index past the list) is inadmissible: nothing
happens, and the step costs 1.
Reward (the paper's): 50 when won, plus the goal-condition success rate, minus 1 for an
inadmissible command. The paper's code added the *level* of the goal-condition rate at
every step, which pays an agent for idling in a half-done state (holding the object forever
beats finishing within a few steps at gamma 0.9 when finishing is hard). vlmrl adds its
*change* by default (``goal_reward="change"``): a potential-based shaping term whose episode
sum is the final rate, so the return is 50 * won + final rate - inadmissible commands;
``goal_reward="level"`` reproduces the paper exactly.
Termination: won. Truncation: 50 steps. Success: won. Ceiling: 1 (every game listed is
solvable; shipped games are solved by the expert within 50 steps when they are written).

Engines: ``engine="text"`` (the default) is alfworld's TextWorld engine (`engine`), and the
image is the text, drawn. ``engine="thor"`` (optional, `thor`) is the paper's setup: the game
runs in AI2-THOR through alfworld's own THOR worker and the image is THOR's frame resized to
300x300; it needs ``pip install 'alfworld[vis]'``, the games of `alfworld-download` and an X
display, and says in one line which is missing. The prompt, parser, reward and `info` are the
same for both.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces
from PIL import Image

from vlmrl.games.alfworld.conditions import goal_condition_rate
from vlmrl.games.alfworld.data import TASK_TYPES, GameFile, find_games, require_alfworld, resolve_data_root
from vlmrl.games.alfworld.engine import EXPERTS, Engine, EngineState, split_intro
from vlmrl.games.alfworld.render import SIZE, draw_observation
from vlmrl.games.alfworld.thor import ThorEngine, check_thor_scene, require_thor
from vlmrl.games.base import GameEnv
from vlmrl.infra.errors import UsageError

MAX_STEPS = 50
WIN_REWARD = 50.0
INADMISSIBLE_PENALTY = -1.0
GOAL_REWARDS = ("change", "level")
ENGINES = ("text", "thor")
ACTION_SPACE_SIZE = 256
"""Bound of the discrete action space; only indices below the current admissible count are admissible."""
NOTHING_HAPPENS = "Nothing happens."


class ALFWorldEnv(GameEnv):
    max_steps = MAX_STEPS

    def __init__(
        self,
        render_mode: str | None = None,
        split: str = "train",
        data: str | None = None,
        task_types: Sequence[str] | None = None,
        expert: str = "handcoded",
        goal_reward: str = "change",
        engine: str = "text",
    ) -> None:
        super().__init__(render_mode)
        if goal_reward not in GOAL_REWARDS:
            raise UsageError(f"goal_reward must be one of {', '.join(GOAL_REWARDS)}, not {goal_reward!r}")
        if engine not in ENGINES:
            raise UsageError(f"engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        if expert not in EXPERTS:
            raise UsageError(f"expert must be one of {', '.join(EXPERTS)}, not {expert!r}")
        require_alfworld()
        self.data_root = resolve_data_root(data)
        self.split = split
        self.games: tuple[GameFile, ...] = find_games(self.data_root, split, tuple(task_types or TASK_TYPES))
        self.engine = build_engine(engine, expert, self.games)
        self.goal_reward = goal_reward
        self.action_space = spaces.Discrete(ACTION_SPACE_SIZE)
        self._params: dict[GameFile, dict[str, Any]] = {}
        self.game: GameFile = self.games[0]
        self.params: dict[str, Any] = {}
        self.task = ""
        self.observation_text = ""
        self.last_command: str | None = None
        self.last_admissible = True
        self.state: EngineState | None = None
        self.goal_rate = 0.0
        self.steps = 0

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.game = self._choose_game((options or {}).get("game"))
        self.params = self._game_params(self.game)
        self.state = self.engine.reset(self.game.game, int(self.np_random.integers(2**31)))
        self.observation_text, self.task = split_intro(self.state.feedback)
        self.last_command, self.last_admissible = None, True
        self.goal_rate = self._goal_rate()
        self.steps = 0
        return self.observation(), self.state_info()

    def step(self, action):
        if self.state is None:
            raise RuntimeError("call reset() before step()")
        command, admissible = self.command_of(action)
        if admissible:
            self.state = self.engine.step(command)
            self.observation_text = self.state.feedback.strip()
        else:
            self.observation_text = NOTHING_HAPPENS
        self.last_command, self.last_admissible = command, admissible
        self.steps += 1
        rate = self._goal_rate()
        goal_term = rate - self.goal_rate if self.goal_reward == "change" else rate
        self.goal_rate = rate
        won = self.state.won
        reward = WIN_REWARD * won + goal_term + (0.0 if admissible else INADMISSIBLE_PENALTY)
        terminated = won
        truncated = not won and self.steps >= self.max_steps
        info = self._finish(self.state_info(), terminated, truncated, success=won)
        return self.observation(), float(reward), terminated, truncated, info

    def state_info(self) -> dict[str, Any]:
        return {
            "observation": self.observation_text,
            "task": self.task,
            "admissible_commands": list(self.admissible_commands),
            "task_type": self.game.task_type,
            "won": bool(self.state.won) if self.state else False,
            "goal_condition_success_rate": self.goal_rate,
            "last_action": self.last_command,
            "admissible": self.last_admissible,
            "game": self.game.name,
            "step": self.steps,
        }

    def draw(self) -> Image.Image:
        if isinstance(self.engine, ThorEngine):
            picture = Image.fromarray(self.engine.frame()).convert("RGB")
            return picture.resize((SIZE, SIZE), Image.Resampling.BILINEAR)
        return draw_observation(self.task, self.observation_text, self.last_command)

    def close(self) -> None:
        if isinstance(self.engine, ThorEngine):
            self.engine.close()
        super().close()

    # ------------------------------------------------------------------ what the task reads
    @property
    def admissible_commands(self) -> tuple[str, ...]:
        return self.state.admissible if self.state else ()

    def expert_command(self) -> str:
        """alfworld's expert's next command (admissible)."""
        return self.engine.expert_command()

    def holding(self) -> list[str]:
        """What the agent carries, by the names the player sees."""
        facts = self.state.facts if self.state else ()
        return [args[1] for name, args in facts if name == "holds" and len(args) == 2]

    def command_of(self, action: Any) -> tuple[str, bool]:
        """The command an action means, and whether the game accepts it now."""
        admissible = self.admissible_commands
        if isinstance(action, str):
            command = " ".join(action.split())
            return command, command in admissible
        if isinstance(action, (int, np.integer)) and not isinstance(action, bool):
            index = int(action)
            if 0 <= index < len(admissible):
                return admissible[index], True
        return str(action), False

    # ------------------------------------------------------------------ helpers
    def _choose_game(self, wanted: int | str | None) -> GameFile:
        if wanted is None:
            return self.games[int(self.np_random.integers(len(self.games)))]
        if isinstance(wanted, str):
            for game in self.games:
                if game.name == wanted or str(game.folder) == wanted:
                    return game
            raise UsageError(f"no ALFWorld game {wanted!r} in split {self.split!r} of {self.data_root}")
        return self.games[int(wanted) % len(self.games)]

    def _game_params(self, game: GameFile) -> dict[str, Any]:
        if game not in self._params:
            traj = json.loads(game.traj_data.read_text())
            self._params[game] = dict(traj.get("pddl_params") or {})
        return self._params[game]

    def _goal_rate(self) -> float:
        assert self.state is not None
        if self.state.won:
            return 1.0
        if self.state.goal_rate is not None:
            return self.state.goal_rate
        return goal_condition_rate(self.game.task_type, self.params, self.state.facts)


def build_engine(engine: str, expert: str, games: Sequence[GameFile]) -> Engine | ThorEngine:
    """The text engine, or THOR once its imports and the first game's scene are checked
    (so that a missing piece is one line before THOR's Unity player starts)."""
    if engine == "text":
        return Engine(expert)
    require_thor()
    check_thor_scene(games[0].traj_data)
    return ThorEngine(expert)
