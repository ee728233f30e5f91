"""A furnished room and a task, written as alfworld's game files.

A `Scenario` says where every receptacle and object is and what the task asks; this module
turns it into the two files of an alfworld trial, the way ALFRED's generator did:
``game.tw-pddl`` (alfworld's PDDL domain and text grammar, the PDDL problem of this room
with the goal from alfworld's goal library, the task sentence in the grammar) and
``traj_data.json`` (task type and targets, which alfworld's expert and loaders read).

Ids follow THOR (``Apple|-01.23|+00.90|+00.50``) mangled for PDDL as ALFRED did
(``Apple_bar__minus_01_dot_23...``), so alfworld's demangler shows them as "apple 1".
Initially every openable receptacle is closed and nothing is hot, cool, clean or switched on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vlmrl.games.alfworld.rooms import can_hold, constants

MANGLE = (("-", "_minus_"), ("|", "_bar_"), ("+", "_plus_"), (".", "_dot_"), (",", "_comma_"))
TOGGLEABLE = ("DeskLamp", "FloorLamp")


def mangle(thor_id: str) -> str:
    """A THOR id as a PDDL name (ALFRED's `fix_pddl_str_chars`)."""
    for char, word in MANGLE:
        thor_id = thor_id.replace(char, word)
    return thor_id


@dataclass
class Scenario:
    """Everything a generated game fixes."""

    task_type: str
    scene: int
    object_target: str
    parent_target: str = ""
    toggle_target: str = ""
    receptacles: list[tuple[str, str]] = field(default_factory=list)
    """(class, THOR id)."""
    objects: list[tuple[str, str, str]] = field(default_factory=list)
    """(class, THOR id, id of the receptacle it is in)."""
    description: str = ""
    """The task sentence ("put a hot apple in countertop")."""

    def pddl_params(self) -> dict[str, object]:
        return {
            "object_target": self.object_target,
            "parent_target": self.parent_target,
            "toggle_target": self.toggle_target,
            "mrecep_target": "",
            "object_sliced": False,
        }


def problem_text(scenario: Scenario, name: str) -> str:
    """The PDDL problem of a scenario (objects, initial facts, goal)."""
    c = constants()
    receptacle_classes = sorted({kind for kind, _ in scenario.receptacles})
    object_classes = sorted({kind for kind, _, _ in scenario.objects})
    location = {thor_id: f"loc_bar_{i + 1}" for i, (_, thor_id) in enumerate(scenario.receptacles)}
    declared = ["agent1 - agent", "loc_bar_0 - location"]
    declared += [f"{loc} - location" for loc in location.values()]
    declared += [f"{mangle(thor_id)} - receptacle" for _, thor_id in scenario.receptacles]
    declared += [f"{mangle(thor_id)} - object" for _, thor_id, _ in scenario.objects]
    declared += [f"{kind}Type - rtype" for kind in receptacle_classes]
    declared += [f"{kind}Type - otype" for kind in object_classes]
    facts = ["(atLocation agent1 loc_bar_0)"]
    for kind, thor_id in scenario.receptacles:
        pddl_name = mangle(thor_id)
        facts += [f"(receptacleType {pddl_name} {kind}Type)", f"(receptacleAtLocation {pddl_name} {location[thor_id]})"]
        if kind in c.OPENABLE_CLASS_SET:
            facts.append(f"(openable {pddl_name})")
    for kind, thor_id, holder in scenario.objects:
        pddl_name = mangle(thor_id)
        facts += [
            f"(objectType {pddl_name} {kind}Type)",
            f"(inReceptacle {pddl_name} {mangle(holder)})",
            f"(objectAtLocation {pddl_name} {location[holder]})",
        ]
        if kind in TOGGLEABLE:
            facts.append(f"(toggleable {pddl_name})")
        else:
            facts.append(f"(pickupable {pddl_name})")
        for prop, fact in (("Heatable", "heatable"), ("Coolable", "coolable"), ("Cleanable", "cleanable")):
            if kind in c.VAL_ACTION_OBJECTS[prop]:
                facts.append(f"({fact} {pddl_name})")
    for receptacle in receptacle_classes:
        facts += [f"(canContain {receptacle}Type {obj}Type)" for obj in object_classes if can_hold(receptacle, obj)]
    goal = goal_text(scenario)
    return (
        f"(define (problem {name})\n    (:domain alfred)\n    (:objects\n        "
        + "\n        ".join(declared)
        + "\n    )\n    (:init\n        "
        + "\n        ".join(facts)
        + f"\n    )\n{goal}\n"
    )


def goal_text(scenario: Scenario) -> str:
    """The goal from alfworld's goal library (which also closes the ``define``)."""
    import alfworld.gen.goal_library as goal_library

    template = goal_library.gdict[scenario.task_type]["pddl"]
    text = template.format(
        obj=scenario.object_target, recep=scenario.parent_target, toggle=scenario.toggle_target, mrecep=""
    )
    return text.replace("#", "-").rstrip()


def description_templates(task_type: str) -> list[str]:
    import alfworld.gen.goal_library as goal_library

    return list(goal_library.gdict[task_type]["templates"])


def describe(scenario: Scenario, template: str) -> str:
    """The task sentence, filled as alfworld fills its templates (class names in lower case)."""
    return template.format(
        obj=scenario.object_target.lower(),
        recep=scenario.parent_target.lower(),
        toggle=scenario.toggle_target.lower(),
        mrecep="",
    )


def game_files(scenario: Scenario, trial: str) -> tuple[dict, dict]:
    """(game.tw-pddl, traj_data.json) contents; the game is not yet marked solvable."""
    from alfworld.info import ALFRED_PDDL_PATH, ALFRED_TWL2_PATH

    grammar = Path(ALFRED_TWL2_PATH).read_text().replace("UNKNOWN GOAL", scenario.description)
    game = {
        "pddl_domain": Path(ALFRED_PDDL_PATH).read_text(),
        "grammar": grammar,
        "pddl_problem": problem_text(scenario, f"plan_{trial}"),
        "solvable": None,
        "walkthrough": None,
    }
    traj = {
        "task_id": trial,
        "task_type": scenario.task_type,
        "scene": {"floor_plan": f"FloorPlan{scenario.scene}", "scene_num": scenario.scene},
        "pddl_params": scenario.pddl_params(),
        "turk_annotations": {"anns": [{"task_desc": scenario.description, "high_descs": [], "votes": []}]},
        "vlmrl": {"generator": "vlmrl.games.alfworld.generate"},
    }
    return game, traj
