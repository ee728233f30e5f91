"""The games: gymnasium environments with image observations, and their text interfaces.

`TASKS` maps each command-line name to its `Task` for the games that need nothing beyond
vlmrl's own dependencies (what "all games" means); `OPTIONAL_TASKS` holds the games behind
an optional extra (``alfworld``: ``pip install 'vlmrl[alfworld]'``). `get_task` knows both.
Importing this package registers every environment with gymnasium
(``gymnasium.make("vlmrl/NumberLine-v0")``) without importing any optional dependency:
making an environment whose dependency is missing fails with one line saying how to get it.
"""

from __future__ import annotations

import gymnasium as gym

from vlmrl.games.alfworld import ALFWorldTask
from vlmrl.games.base import GameEnv, Task
from vlmrl.games.blackjack import BlackjackTask
from vlmrl.games.ezpoints import EZPointsTask
from vlmrl.games.numberline import NumberLineTask
from vlmrl.games.parsing import Parsed
from vlmrl.games.points24 import Points24Task
from vlmrl.games.text_env import Episode, TextActionWrapper
from vlmrl.infra.errors import UsageError
from vlmrl.infra.seeds import EVAL_SEED_BASE

TASKS: dict[str, type[Task]] = {task.name: task for task in (NumberLineTask, EZPointsTask, Points24Task, BlackjackTask)}
OPTIONAL_TASKS: dict[str, type[Task]] = {ALFWorldTask.name: ALFWorldTask}

_ENTRY_POINTS = {
    "vlmrl/NumberLine-v0": "vlmrl.games.numberline:NumberLineEnv",
    "vlmrl/EZPoints-v0": "vlmrl.games.ezpoints:EZPointsEnv",
    "vlmrl/Points24-v0": "vlmrl.games.points24:Points24Env",
    "vlmrl/Blackjack-v0": "vlmrl.games.blackjack:BlackjackEnv",
    "vlmrl/ALFWorld-v0": "vlmrl.games.alfworld.env:ALFWorldEnv",
}
for _env_id, _entry_point in _ENTRY_POINTS.items():
    if _env_id not in gym.registry:
        gym.register(id=_env_id, entry_point=_entry_point)


def game_names(optional: bool = False) -> list[str]:
    """The games' command-line names; with `optional`, the games behind an optional extra too."""
    return list(TASKS) + (list(OPTIONAL_TASKS) if optional else [])


def get_task(name: str) -> Task:
    """The text interface of a game, by its command-line name (case-insensitive)."""
    key = name.strip().lower()
    task = TASKS.get(key) or OPTIONAL_TASKS.get(key)
    if task is None:
        raise UsageError(f"unknown game {name!r}; known games: {', '.join(game_names(optional=True))}")
    return task()


def make_env(name: str, **kwargs) -> gym.Env:
    """The gymnasium environment of a game, by its command-line name."""
    return gym.make(get_task(name).env_id, **kwargs)


def make_text_env(
    task: Task,
    env_kwargs: dict | None = None,
    invalid_action: str | None = None,
    invalid_penalty: float = -1.0,
) -> TextActionWrapper:
    """The game of `task` (built with `env_kwargs`, e.g. ALFWorld's split), stepped by answer text;
    `invalid_action` None: the game's own rule for unparseable answers."""
    return TextActionWrapper(
        make_env(task.name, **(env_kwargs or {})), task, invalid_action=invalid_action, invalid_penalty=invalid_penalty
    )


__all__ = [
    "EVAL_SEED_BASE",
    "OPTIONAL_TASKS",
    "TASKS",
    "Episode",
    "GameEnv",
    "Parsed",
    "Task",
    "TextActionWrapper",
    "game_names",
    "get_task",
    "make_env",
    "make_text_env",
]
