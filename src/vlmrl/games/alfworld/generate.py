"""Writing new solvable ALFWorld games from the floor plans alfworld ships.

alfworld's real games (``alfworld-download``) are ALFRED trials turned into PDDL. Without the
download, this module furnishes a room of an AI2-THOR floor plan (`rooms`: the receptacles
and object classes alfworld's layout files list for it) and writes a trial for a task type:
1. pick the task's targets among what the room allows (alfworld's valid room kinds per task;
   a microwave to heat, a fridge to cool, a sink or bathtub basin to clean, a desk lamp to
   look under; a parent receptacle that can hold the object);
2. place 1-3 target objects (2-3 for pick-two) where they can be but where the task is not
   already done (never in the parent receptacle, nor in the appliance the task needs), and a
   few other objects of the room as distractors, each in a receptacle that can hold it;
3. write the files (`problem`) and keep the game only if alfworld's expert (handcoded, with
   the planner where it gives up, as the environment runs it) wins within 50 steps from every
   one of a few expert seeds, the planner finds a plan, and the goal-condition rate reaches 1
   exactly when the game is won. A rejected draw is redrawn (the seed stream moves on). The
   50-step bar favours smaller rooms and nearer objects than ALFRED's own trials have.

Splits follow alfworld: ``train`` and ``valid_seen`` use the training rooms, ``valid_unseen``
only rooms no other split uses (FloorPlan 10, 219, 308 and 424, ALFRED's unseen-validation
scenes: a kitchen, a living room, a bedroom and a bathroom). Everything is drawn from
``numpy`` generators seeded by (seed, split, task type, index, attempt), so the same
arguments write the same games on every machine.

Use `write_games(out, counts, seed)`; `write_shipped_games()` rewrites the set vlmrl ships
(``python -m vlmrl.games.alfworld.generate --shipped``).
"""

from __future__ import annotations

import argparse
import functools
import json
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from vlmrl.games.alfworld.conditions import goal_conditions
from vlmrl.games.alfworld.data import SHIPPED_DATA, SPLITS, TASK_TYPES, forget_games, require_alfworld
from vlmrl.games.alfworld.engine import Engine
from vlmrl.games.alfworld.problem import Scenario, describe, description_templates, game_files
from vlmrl.games.alfworld.rooms import LAMP_HOLDERS, Room, all_scenes, can_hold, constants, load_room

UNSEEN_SCENES = (10, 219, 308, 424)
SHIPPED_SEED = 20240601
SHIPPED_COUNTS = {"train": 2, "valid_seen": 1, "valid_unseen": 1}
"""Games per task type and split in the shipped set (24 games)."""
MAX_STEPS = 50
EXPERT_SEEDS = (0, 1, 2)
MAX_ATTEMPTS = 200

NEEDS = {
    "pick_heat_then_place_in_recep": ("Heatable", ("Microwave",)),
    "pick_cool_then_place_in_recep": ("Coolable", ("Fridge",)),
    "pick_clean_then_place_in_recep": ("Cleanable", ("SinkBasin", "BathtubBasin")),
}
"""Task type -> (object property it needs, the appliances that give it)."""


def scenes_for(split: str) -> list[int]:
    scenes = all_scenes()
    if split == "valid_unseen":
        return [s for s in scenes if s in UNSEEN_SCENES]
    return [s for s in scenes if s not in UNSEEN_SCENES]


def start_holders(room: Room, task_type: str, obj: str, parent: str) -> list[str]:
    """Receptacle ids a target object may start in: ones that hold it, where the task is not done."""
    avoid = {parent, *NEEDS.get(task_type, ("", ()))[1]}
    return [thor_id for kind, thor_id in room.receptacles if can_hold(kind, obj) and kind not in avoid]


@functools.cache
def task_targets(task_type: str, scene: int) -> list[tuple[str, str, str]]:
    """Every (object, parent, toggle) the task type can ask for in a room."""
    room = load_room(scene)
    if room.kind not in constants().GOALS_VALID[task_type]:
        return []
    if task_type == "look_at_obj_in_light":
        if not room.lamps:
            return []
        return [(obj, "", room.lamps[0]) for obj in room.objects if start_holders(room, task_type, obj, "")]
    classes = room.receptacle_classes()
    prop, appliances = NEEDS.get(task_type, ("", ()))
    if appliances and not classes & set(appliances):
        return []
    objects = [o for o in room.objects if not prop or o in constants().VAL_ACTION_OBJECTS[prop]]
    parents = sorted(classes - set(appliances))
    return [
        (obj, parent, "")
        for obj in objects
        for parent in parents
        if can_hold(parent, obj) and start_holders(room, task_type, obj, parent)
    ]


def draw_scenario(task_type: str, scenes: Sequence[int], rng: np.random.Generator) -> Scenario:
    """A furnished room with a task of `task_type` (not yet checked to be solvable)."""
    feasible = [scene for scene in scenes if task_targets(task_type, scene)]
    if not feasible:
        raise ValueError(f"no room among {list(scenes)} allows a {task_type} task")
    scene = feasible[int(rng.integers(len(feasible)))]
    targets = task_targets(task_type, scene)
    obj, parent, toggle = targets[int(rng.integers(len(targets)))]
    room = load_room(scene)
    scenario = Scenario(task_type, scene, obj, parent, toggle, receptacles=list(room.receptacles))
    used_ids: set[str] = set()

    def place(kind: str, holders: list[str]) -> None:
        while True:
            position = rng.uniform((-3.0, 0.0, -3.0), (3.0, 2.0, 3.0))
            thor_id = f"{kind}|" + "|".join(f"{value:+06.2f}" for value in position)
            if thor_id not in used_ids:
                break
        used_ids.add(thor_id)
        scenario.objects.append((kind, thor_id, holders[int(rng.integers(len(holders)))]))

    low = 2 if task_type == "pick_two_obj_and_place" else 1
    for _ in range(int(rng.integers(low, 4))):
        place(obj, start_holders(room, task_type, obj, parent))
    others = [o for o in room.objects if o != obj]
    for index in rng.permutation(len(others))[: int(rng.integers(3, 8))]:
        kind = others[int(index)]
        holders = [thor_id for k, thor_id in room.receptacles if can_hold(k, kind)]
        for _ in range(int(rng.integers(1, 3))):
            place(kind, holders)
    if room.lamps:
        lamp_holders = [thor_id for kind, thor_id in room.receptacles if kind in LAMP_HOLDERS]
        place(room.lamps[0], lamp_holders)
    templates = description_templates(task_type)
    scenario.description = describe(scenario, templates[int(rng.integers(len(templates)))])
    return scenario


def solve(engine: Engine, game: Path, task_type: str, params: Mapping[str, object]) -> list[str] | None:
    """The expert's winning commands (first expert seed), or None unless every check passes."""
    walkthrough: list[str] | None = None
    for seed in EXPERT_SEEDS:
        state = engine.reset(game, seed)
        commands: list[str] = []
        while True:
            met, total = goal_conditions(task_type, params, state.facts)
            if state.won != (met == total):
                return None  # the sub-goals and the PDDL goal disagree
            if state.won or len(commands) == MAX_STEPS:
                break
            commands.append(engine.expert_command())
            state = engine.step(commands[-1])
        if not state.won:
            return None
        walkthrough = walkthrough or commands
    engine.reset(game, 0)
    plan = engine.replan()
    return walkthrough if plan and len(plan) <= MAX_STEPS else None


def generate_game(task_type: str, split: str, seed: int, index: int, out: Path, engine: Engine | None = None) -> Path:
    """Write one solvable game under ``out/json_2.1.1/<split>/``; returns its trial folder."""
    require_alfworld()
    engine = engine or Engine("handcoded")
    scenes = scenes_for(split)
    for attempt in range(MAX_ATTEMPTS):
        key = [seed, SPLITS.index(split), TASK_TYPES.index(task_type), index, attempt]
        rng = np.random.default_rng(np.random.SeedSequence(key))
        scenario = draw_scenario(task_type, scenes, rng)
        trial = f"trial_vlmrl_{seed}_{index:04d}"
        game, traj = game_files(scenario, trial)
        with tempfile.TemporaryDirectory() as scratch:
            folder = Path(scratch)
            (folder / "traj_data.json").write_text(json.dumps(traj))
            (folder / "game.tw-pddl").write_text(json.dumps(game))
            walkthrough = solve(engine, folder / "game.tw-pddl", task_type, scenario.pddl_params())
        if walkthrough is None:
            continue
        game.update(solvable=True, walkthrough=walkthrough)
        traj["vlmrl"].update(seed=seed, attempt=attempt, expert_steps=len(walkthrough))
        last = scenario.parent_target or scenario.toggle_target
        name = f"{task_type}-{scenario.object_target}-None-{last}-{scenario.scene}"
        target = out / "json_2.1.1" / split / name / trial
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        (target / "traj_data.json").write_text(json.dumps(traj, indent=1) + "\n")
        (target / "game.tw-pddl").write_text(json.dumps(game) + "\n")
        return target
    raise RuntimeError(f"no solvable {task_type} game in {MAX_ATTEMPTS} draws (seed {seed}, index {index})")


def write_games(
    out: str | Path,
    counts: Mapping[str, int] = SHIPPED_COUNTS,
    seed: int = SHIPPED_SEED,
    task_types: Sequence[str] = TASK_TYPES,
    progress: Callable[[Path], None] | None = None,
) -> list[Path]:
    """`counts[split]` games of every task type per split, in alfworld's layout under `out`."""
    out = Path(out)
    engine = Engine("handcoded")
    written = []
    for split in SPLITS:
        for task_type in task_types:
            for k in range(counts.get(split, 0)):
                index = TASK_TYPES.index(task_type) * 1000 + k
                written.append(generate_game(task_type, split, seed, index, out, engine))
                if progress is not None:
                    progress(written[-1])
    forget_games()
    return written


def write_shipped_games() -> list[Path]:
    """Rewrite the games vlmrl ships (package data) from scratch."""
    shutil.rmtree(SHIPPED_DATA / "json_2.1.1", ignore_errors=True)
    return write_games(SHIPPED_DATA, SHIPPED_COUNTS, SHIPPED_SEED)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write solvable ALFWorld games from alfworld's floor plans.")
    parser.add_argument("out", nargs="?", help="folder to write json_2.1.1/<split>/... into")
    parser.add_argument("--shipped", action="store_true", help="rewrite the games vlmrl ships instead")
    parser.add_argument("--seed", type=int, default=SHIPPED_SEED)
    for split in SPLITS:
        parser.add_argument(f"--{split.replace('_', '-')}", type=int, default=SHIPPED_COUNTS[split], dest=split)
    args = parser.parse_args(argv)
    if args.shipped:
        written = write_shipped_games()
    elif args.out:
        counts = {split: getattr(args, split) for split in SPLITS}
        written = write_games(args.out, counts, args.seed, progress=lambda path: print(path, flush=True))
    else:
        parser.error("give an output folder or --shipped")
    print(f"{len(written)} games written")


if __name__ == "__main__":
    main()
