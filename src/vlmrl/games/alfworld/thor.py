"""alfworld's AI2-THOR engine, the paper's visual ALFWorld: optional, for whoever has THOR.

``ALFWorldEnv(engine="thor")`` (``env_kwargs={engine: thor}``) plays each game in AI2-THOR
through alfworld's own per-game worker (`AlfredThorEnv.Thor`, called directly rather than on
its thread): the scene is restored from the trial's ``traj_data.json``, alfworld's oracle
controller writes the text and the admissible commands (``put X in/on Y`` where the text
engine says ``move X to Y``), THOR reports won and the goal-condition rate, alfworld's
handcoded THOR expert gives the expert action, and the observation is THOR's egocentric frame.
This is what RL4VLM trained on.

vlmrl installs none of it. It needs ``pip install 'alfworld[vis]'`` (ai2thor 2.1.0, opencv,
torchvision), the ALFRED trials of `alfworld-download` (their ``traj_data.json`` hold the
scene: object poses, toggles, start position; vlmrl's shipped and generated games hold only
the floor plan, so they are text only), and an X display for THOR's Unity player (which
ai2thor fetches on first start). Each missing piece is one error line. vlmrl's tests cannot
start THOR: they check those errors and this adapter against a stand-in for alfworld's
worker, not THOR itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from vlmrl.games.alfworld.data import require_alfworld
from vlmrl.games.alfworld.engine import EngineState
from vlmrl.infra.errors import UsageError

THOR_HINT = (
    "engine=thor needs AI2-THOR, which vlmrl does not install: pip install 'alfworld[vis]' "
    "(ai2thor 2.1.0, opencv, torchvision), the games of `alfworld-download`, and an X display"
)
SCENE_KEYS = ("scene_num", "object_poses", "dirty_and_empty", "object_toggles", "init_action")
"""What alfworld's worker reads from a trial's ``traj_data.json`` to rebuild its THOR scene."""
SCREEN = 300
UNLIMITED_STEPS = 10**9
"""The worker's own step limit; the environment truncates at its 50 steps."""


def require_thor() -> None:
    """Import alfworld's THOR environment (ai2thor, opencv, torchvision) or fail in one line."""
    require_alfworld()
    try:
        import alfworld.agents.environment.alfred_thor_env  # noqa: F401
    except ImportError as error:
        raise UsageError(f"{THOR_HINT} ({error})") from None


def check_thor_scene(traj_data: Path) -> None:
    """A game THOR can set up: its ``traj_data.json`` carries the ALFRED scene, not just a floor plan."""
    try:
        scene = json.loads(traj_data.read_text()).get("scene") or {}
    except (OSError, ValueError) as error:
        raise UsageError(f"cannot read {traj_data}: {error}") from None
    missing = [key for key in SCENE_KEYS if key not in scene]
    if missing:
        raise UsageError(
            f"{traj_data} has no THOR scene (no {', '.join(missing)}): engine=thor plays the ALFRED games "
            "of `alfworld-download`; vlmrl's shipped and generated games are text only"
        )


def worker_config() -> dict[str, Any]:
    """The part of alfworld's config its THOR worker reads: 300x300 frames, the oracle controller."""
    return {
        "env": {
            "thor": {
                "screen_height": SCREEN,
                "screen_width": SCREEN,
                "smooth_nav": False,
                "save_frames_to_disk": False,
                "save_frames_path": "",
            },
            "goal_desc_human_anns_prob": 0.0,
        },
        "controller": {"type": "oracle", "load_receps": True, "debug": False},
        "general": {"training_method": "dagger"},
        "dagger": {"training": {"max_nb_steps_per_episode": UNLIMITED_STEPS}},
    }


class ThorEngine:
    """One ALFRED game at a time in AI2-THOR, with the text engine's interface plus `frame`."""

    def __init__(self, expert: str = "handcoded") -> None:
        if expert != "handcoded":
            raise UsageError(f"engine=thor has alfworld's handcoded expert only, not {expert!r}")
        require_thor()
        from alfworld.agents.environment.alfred_thor_env import AlfredThorEnv

        self.expert = expert
        self.state: EngineState | None = None
        self._random_state = random.Random(0).getstate()
        self._worker = AlfredThorEnv.Thor(None, train_eval="train")  # "train": the worker runs its expert
        try:
            with self._inside_alfworld():
                self._worker.init_env(worker_config())
        except Exception as error:  # noqa: BLE001 - THOR fails to start in many ways (display, binary, network)
            raise UsageError(f"AI2-THOR did not start ({type(error).__name__}: {error}); {THOR_HINT}") from None

    def reset(self, game: Path, seed: int) -> EngineState:
        """Set up the game whose folder holds `game` (its ``game.tw-pddl``) from its ``traj_data.json``."""
        traj_data = game.parent / "traj_data.json"
        check_thor_scene(traj_data)
        self._random_state = random.Random(seed).getstate()
        with self._inside_alfworld():
            self._worker.reset(str(traj_data))
        self.state = self._read()
        return self.state

    def step(self, command: str) -> EngineState:
        if self.state is None:
            raise RuntimeError("reset() the engine before step()")
        with self._inside_alfworld():
            self._worker.step(command)
        self.state = self._read()
        return self.state

    def expert_command(self) -> str:
        """alfworld's handcoded THOR expert's command ("look" when it has none to give)."""
        if self.state is None:
            raise RuntimeError("reset() the engine before asking the expert")
        plan = self.state.expert_plan
        return plan[0] if plan and plan[0] in self.state.admissible else "look"

    def frame(self) -> np.ndarray:
        """THOR's current egocentric frame, RGB (alfworld's own `get_last_frame` is BGR, for OpenCV)."""
        return np.asarray(self._worker.env.last_event.frame, dtype=np.uint8)

    def close(self) -> None:
        self._worker.env.stop()

    def _read(self) -> EngineState:
        feedback, _, admissible, won, goal_rate, expert_actions = self._worker.get_results()
        held = tuple(("holds", ("agent1", str(name))) for name in self._worker.controller.inventory)
        return EngineState(
            feedback=str(feedback),
            admissible=tuple(admissible),
            won=bool(won),
            facts=held,
            expert_plan=tuple(expert_actions),
            goal_rate=float(goal_rate),
        )

    @contextlib.contextmanager
    def _inside_alfworld(self) -> Iterator[None]:
        """alfworld's worker prints (the task, at every reset) and draws from the global `random`:
        keep its prints off stdout (where `--json` goes) and its draws on the engine's own state."""
        saved = random.getstate()
        random.setstate(self._random_state)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                yield
        finally:
            self._random_state = random.getstate()
            random.setstate(saved)
