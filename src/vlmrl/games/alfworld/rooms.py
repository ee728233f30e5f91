"""The rooms alfworld ships: what each AI2-THOR floor plan holds, read from its layout files.

alfworld's package carries, per floor plan, ``FloorPlan<n>-objects.json`` (the object and
receptacle classes in the room) and ``FloorPlan<n>-openable.json`` (receptacle instances
with their THOR ids, e.g. eight cabinets); with alfworld's class tables
(`alfworld.gen.constants`: which receptacle can hold which object, what can be heated,
cooled, cleaned, switched on) that is enough to furnish a room for a text game. Receptacles
keep their THOR ids, so "cabinet 3" is numbered as in alfworld's own games of that room.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

LAMP_HOLDERS = ("Desk", "SideTable", "Dresser")
"""Where a desk lamp stands (lamps are not pickable; they are "in" their receptacle)."""
BASINS = {"Sink": "SinkBasin", "Bathtub": "BathtubBasin"}
"""THOR's sink and bathtub hold their basin, which is the receptacle alfworld's games use; its
id is the owner's plus the basin class (``Sink|x|y|z|SinkBasin``), which alfworld's demangler
turns into "sinkbasin 1"."""
OWNER_OF_BASIN = {basin: owner for owner, basin in BASINS.items()}
ROOM_KINDS = {
    "Kitchen": range(1, 31),
    "LivingRoom": range(201, 231),
    "Bedroom": range(301, 331),
    "Bathroom": range(401, 431),
}
INSTANCES_OF_UNLISTED = {"StoveBurner": 4}
"""Receptacles missing from the openable file get one instance each, burners four."""


@dataclass(frozen=True)
class Room:
    scene: int
    kind: str
    receptacles: tuple[tuple[str, str], ...]
    """(class, THOR-style id) of every static receptacle, ids unique."""
    objects: tuple[str, ...]
    """Classes of pickable objects present in the room that some receptacle here can hold."""
    lamps: tuple[str, ...]
    """Classes of switchable desk lamps present (only ``DeskLamp`` is furnished)."""

    def receptacle_classes(self) -> set[str]:
        return {kind for kind, _ in self.receptacles}


@functools.cache
def constants():
    """alfworld's class tables (imported on first use: alfworld is an optional dependency)."""
    import alfworld.gen.constants as alfred_constants

    return alfred_constants


def layouts_dir() -> Path:
    import alfworld.gen

    return Path(alfworld.gen.__file__).resolve().parent / "layouts"


def room_kind(scene: int) -> str:
    for kind, scenes in ROOM_KINDS.items():
        if scene in scenes:
            return kind
    raise ValueError(f"FloorPlan{scene} is not an AI2-THOR room")


def static_receptacles() -> set[str]:
    c = constants()
    return set(c.RECEPTACLES) - set(c.MOVABLE_RECEPTACLES)


def can_hold(receptacle: str, obj: str) -> bool:
    return obj in constants().VAL_RECEPTACLE_OBJECTS.get(receptacle, ())


def pickable_classes() -> set[str]:
    """Object classes alfworld lets a player carry and put down (sliced pieces aside)."""
    c = constants()
    held = set().union(*c.VAL_RECEPTACLE_OBJECTS.values())
    return {o for o in held if "Sliced" not in o and o in c.OBJECTS}


def receptacle_id(kind: str, position: str) -> str:
    """A THOR-style receptacle id (basins carry their owner's name first)."""
    if kind in OWNER_OF_BASIN:
        return f"{OWNER_OF_BASIN[kind]}|{position}|{kind}"
    return f"{kind}|{position}"


@functools.cache
def load_room(scene: int) -> Room:
    folder = layouts_dir()
    listed = json.loads((folder / f"FloorPlan{scene}-objects.json").read_text())
    openable = json.loads((folder / f"FloorPlan{scene}-openable.json").read_text())
    static = static_receptacles()
    receptacles: list[tuple[str, str]] = []
    for thor_id in sorted(openable):
        parts = thor_id.split("|")
        if parts[0] in BASINS:
            kind = parts[-1] if parts[-1] in OWNER_OF_BASIN else BASINS[parts[0]]
            receptacles.append((kind, receptacle_id(kind, "|".join(parts[1:4]))))
        elif parts[0] in static:
            receptacles.append((parts[0], thor_id))
    present = {kind for kind, _ in receptacles}
    for kind in sorted({BASINS.get(name, name) for name in listed} & static - present):
        for i in range(INSTANCES_OF_UNLISTED.get(kind, 1)):
            receptacles.append((kind, receptacle_id(kind, f"{scene:+04d}|{i:+03d}|+00.00")))
    classes = {kind for kind, _ in receptacles}
    objects = sorted(
        o for o in set(listed) & pickable_classes() if any(can_hold(receptacle, o) for receptacle in classes)
    )
    lamps = ("DeskLamp",) if "DeskLamp" in listed and classes & set(LAMP_HOLDERS) else ()
    return Room(scene, room_kind(scene), tuple(receptacles), tuple(objects), lamps)


def all_scenes() -> list[int]:
    folder = layouts_dir()
    return sorted(
        scene
        for scenes in ROOM_KINDS.values()
        for scene in scenes
        if (folder / f"FloorPlan{scene}-objects.json").is_file()
        and (folder / f"FloorPlan{scene}-openable.json").is_file()
    )
