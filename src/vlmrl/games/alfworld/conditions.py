"""Goal-condition success: the fraction of a task's sub-goals the current state meets.

alfworld computes this number only in its THOR environment, from the simulator's object
metadata (`alfworld.env.tasks`); its text engine reports just `won`. The paper's reward
uses it, so vlmrl counts the same sub-goals over the text engine's PDDL facts:

- pick_and_place_simple (1): an object of the target type is in a receptacle of the
  parent type;
- pick_two_obj_and_place (2): one per target object in the same parent receptacle, at most 2;
- look_at_obj_in_light (2): the agent holds an object of the target type; a lamp of the
  toggle type is switched on where the agent stands;
- pick_{clean,heat,cool}_then_place_in_recep (3): a target object is in a parent
  receptacle; a target object is clean/hot/cool; one target object is both.

All sub-goals met is exactly the PDDL goal (``won``). Facts are ``(predicate, arguments)``
with the demangled names the player sees (``("inreceptacle", ("apple 1", "fridge 1"))``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Fact = tuple[str, tuple[str, ...]]

STATE_PREDICATE = {
    "pick_clean_then_place_in_recep": "isclean",
    "pick_heat_then_place_in_recep": "ishot",
    "pick_cool_then_place_in_recep": "iscool",
}


def type_name(target: str) -> str:
    """The PDDL type of an ALFRED class name: ``"CounterTop"`` -> ``"countertoptype"``."""
    return f"{target.lower()}type"


def goal_conditions(task_type: str, params: Mapping[str, str], facts: Iterable[Fact]) -> tuple[int, int]:
    """(sub-goals met, sub-goals in all) for the task in the state the facts describe."""
    by_predicate: dict[str, list[tuple[str, ...]]] = {}
    for predicate, arguments in facts:
        by_predicate.setdefault(predicate, []).append(arguments)
    types = {args[0]: args[1] for key in ("objecttype", "receptacletype") for args in by_predicate.get(key, [])}
    obj = type_name(params.get("object_target") or "")
    parent = type_name(params.get("parent_target") or "")
    targets = {name for name, kind in types.items() if kind == obj}
    placed = [(o, r) for o, r in by_predicate.get("inreceptacle", []) if o in targets and types.get(r) == parent]

    if task_type == "pick_and_place_simple":
        return int(bool(placed)), 1
    if task_type == "pick_two_obj_and_place":
        per_receptacle: dict[str, int] = {}
        for _, receptacle in placed:
            per_receptacle[receptacle] = per_receptacle.get(receptacle, 0) + 1
        return min(max(per_receptacle.values(), default=0), 2), 2
    if task_type == "look_at_obj_in_light":
        return _holds_target(by_predicate, targets) + _lamp_on_here(by_predicate, types, params), 2
    if task_type in STATE_PREDICATE:
        changed = {args[0] for args in by_predicate.get(STATE_PREDICATE[task_type], [])} & targets
        in_place = {o for o, _ in placed}
        return int(bool(in_place)) + int(bool(changed)) + int(bool(in_place & changed)), 3
    raise ValueError(f"unknown ALFWorld task type {task_type!r}")


def goal_condition_rate(task_type: str, params: Mapping[str, str], facts: Iterable[Fact]) -> float:
    met, total = goal_conditions(task_type, params, facts)
    return met / total


def _holds_target(by_predicate: dict[str, list[tuple[str, ...]]], targets: set[str]) -> int:
    return int(any(args[1] in targets for args in by_predicate.get("holds", [])))


def _lamp_on_here(
    by_predicate: dict[str, list[tuple[str, ...]]], types: dict[str, str], params: Mapping[str, str]
) -> int:
    """A lamp of the toggle type has been switched on and stands where the agent is."""
    lamp_type = type_name(params.get("toggle_target") or "")
    lit = {args[0] for args in by_predicate.get("istoggled", []) if types.get(args[0]) == lamp_type}
    here = {args[1] for args in by_predicate.get("atlocation", [])}
    receptacles_here = {r for r, location in by_predicate.get("receptacleatlocation", []) if location in here}
    return int(any(o in lit and r in receptacles_here for o, r in by_predicate.get("inreceptacle", [])))
