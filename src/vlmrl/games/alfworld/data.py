"""Where ALFWorld games live, and the one-line errors when they or the package are missing.

A games folder has alfworld's layout, ``json_2.1.1/<split>/<task>/<trial>/`` with a
``game.tw-pddl`` (PDDL problem, domain and text grammar) and a ``traj_data.json`` (task
type and targets) in each trial folder. `alfworld-download` fills ``$ALFWORLD_DATA`` with
the real set (about 3,500 training games); vlmrl ships a small set written by
`vlmrl.games.alfworld.generate` so that everything runs without the download.

Nothing here imports alfworld: finding games and explaining what is missing must work
without it.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path

from vlmrl.infra.errors import UsageError

TASK_TYPES = (
    "pick_and_place_simple",
    "look_at_obj_in_light",
    "pick_clean_then_place_in_recep",
    "pick_heat_then_place_in_recep",
    "pick_cool_then_place_in_recep",
    "pick_two_obj_and_place",
)
"""alfworld's six task types, in its own order (task-type ids 1..6)."""

SPLITS = ("train", "valid_seen", "valid_unseen")
"""Training games, held-out games in training rooms, held-out games in unseen rooms."""

SHIPPED_DATA = Path(__file__).resolve().parent.parent / "alfworld_games"
"""The games that come with vlmrl (package data), in the same layout as ``$ALFWORLD_DATA``."""

ALFWORLD_DEFAULT_CACHE = Path("~/.cache/alfworld").expanduser()
"""Where alfworld puts (and, when importing, points ``$ALFWORLD_DATA`` at) its download."""

INSTALL_HINT = (
    "pip install 'vlmrl[alfworld]'; vlmrl's shipped games then play at once, "
    "and `alfworld-download` fetches alfworld's full set"
)


@dataclass(frozen=True)
class GameFile:
    """One playable game: its folder, task type, and the path shown to users."""

    folder: Path
    task_type: str
    name: str
    """``<split>/<task>/<trial>`` relative to ``json_2.1.1``: stable across machines."""

    @property
    def game(self) -> Path:
        return self.folder / "game.tw-pddl"

    @property
    def traj_data(self) -> Path:
        return self.folder / "traj_data.json"


def require_alfworld() -> None:
    """Import alfworld's text engine or fail with one line saying how to install it."""
    try:
        import alfworld.agents.environment.alfred_tw_env  # noqa: F401
        import textworld.envs  # noqa: F401
    except ImportError as error:
        raise UsageError(f"ALFWorld needs the optional alfworld package ({error}): {INSTALL_HINT}") from None


def missing_data_message(root: Path, split: str, detail: str) -> str:
    return (
        f"no ALFWorld games in {root} for split {split!r} ({detail}): expected "
        f"json_2.1.1/{split}/<task>/<trial>/ folders with game.tw-pddl and traj_data.json; "
        f"set $ALFWORLD_DATA to a folder filled by `alfworld-download`, or unset it (and pass no data=) "
        f"to play the shipped games ({SHIPPED_DATA})"
    )


def resolve_data_root(data: str | os.PathLike | None) -> Path:
    """The games folder to read: `data` if given (``"shipped"`` names vlmrl's own games),
    else ``$ALFWORLD_DATA``, else alfworld's cache when `alfworld-download` filled it, else the
    shipped games.

    An ``$ALFWORLD_DATA`` that the user set but that holds no games is an error, not a silent
    fall-back; alfworld's own default (an empty cache folder its import creates, and names in
    ``$ALFWORLD_DATA``) is not. The answer does not depend on whether alfworld was imported.
    """
    if data is not None:
        return SHIPPED_DATA if str(data) == "shipped" else Path(data).expanduser()
    variable = os.environ.get("ALFWORLD_DATA")
    root = Path(variable).expanduser() if variable else ALFWORLD_DEFAULT_CACHE
    if (root / "json_2.1.1").is_dir() or root.resolve() != ALFWORLD_DEFAULT_CACHE.resolve():
        return root
    return SHIPPED_DATA


def find_games(root: Path, split: str, task_types: tuple[str, ...] = TASK_TYPES) -> tuple[GameFile, ...]:
    """Every solvable game of a split, sorted by name (so seeds pick the same game everywhere).

    Like alfworld's own loader, trials with movable receptacles or sliced objects are
    skipped, and so are games not marked solvable. Cached per process (every environment of a
    run reads the same list, and checking thousands of game files takes seconds): after
    writing games into a folder already read, call `forget_games`.
    """
    return _find_games(str(root), split, tuple(task_types))


def forget_games() -> None:
    """Drop the cached game lists, so that the next `find_games` looks at the folders again."""
    _find_games.cache_clear()


@functools.lru_cache(maxsize=16)
def _find_games(root_text: str, split: str, task_types: tuple[str, ...]) -> tuple[GameFile, ...]:
    root = Path(root_text)
    if split not in SPLITS:
        raise UsageError(f"unknown ALFWorld split {split!r}; known splits: {', '.join(SPLITS)}")
    unknown = [t for t in task_types if t not in TASK_TYPES]
    if unknown:
        raise UsageError(f"unknown ALFWorld task type {unknown[0]!r}; known types: {', '.join(TASK_TYPES)}")
    base = root / "json_2.1.1" / split
    if not base.is_dir():
        raise UsageError(missing_data_message(root, split, f"{base} does not exist"))
    games = []
    for traj_path in sorted(base.rglob("traj_data.json")):
        folder = traj_path.parent
        if "movable" in str(folder) or "Sliced" in str(folder) or not (folder / "game.tw-pddl").is_file():
            continue
        task_type = _read_json(traj_path).get("task_type")
        if task_type not in task_types or not _is_solvable(folder / "game.tw-pddl"):
            continue
        games.append(GameFile(folder, task_type, folder.relative_to(root / "json_2.1.1").as_posix()))
    if not games:
        raise UsageError(missing_data_message(root, split, "no solvable game of the requested task types"))
    return tuple(games)


def _read_json(path: Path) -> dict:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {path}: {error}") from None
    if not isinstance(value, dict):
        raise UsageError(f"{path} is not a JSON object")
    return value


def _is_solvable(game: Path) -> bool:
    """alfworld marks each game file with ``"solvable"`` once its expert has solved it."""
    return _read_json(game).get("solvable") is True
