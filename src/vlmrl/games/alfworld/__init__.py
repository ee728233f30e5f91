"""ALFWorld, the paper's household benchmark, on alfworld's text engine (optional dependency).

Importing this package never imports alfworld: the task, its parser and the renderer are
plain Python. Building the environment (``gymnasium.make("vlmrl/ALFWorld-v0")``) needs
``pip install 'vlmrl[alfworld]'`` and says so in one line otherwise.

Modules: `data` (where games are, splits, task types, errors), `engine` (alfworld's
TextWorld engine and expert), `thor` (alfworld's AI2-THOR engine, optional: ``engine="thor"``),
`conditions` (goal-condition success), `env` (the gymnasium environment and its reward),
`render` (the observation image), `task` (prompt, parser, expert answers), `generate`
(writing new solvable games from alfworld's floor plans).
"""

from vlmrl.games.alfworld.data import SHIPPED_DATA, SPLITS, TASK_TYPES
from vlmrl.games.alfworld.task import ALFWorldTask, parse_command

__all__ = ["SHIPPED_DATA", "SPLITS", "TASK_TYPES", "ALFWorldTask", "parse_command"]
