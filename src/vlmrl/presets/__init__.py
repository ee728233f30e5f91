"""The presets shipped inside the package, read with `importlib.resources` so that an installed
wheel finds them anywhere: `<game>.yaml` (PPO on the CPU, `vlmrl train --env GAME`),
`sft/<game>.yaml` (the warm-up, `vlmrl sft --env GAME`) and `paper/<game>-llava-7b.yaml` (the
paper's recipe, `vlmrl train --config paper/GAME-llava-7b`). A preset is named by its path
without `.yaml`. Beside them, `accelerate/<layout>.yaml` are config files for `accelerate launch
--config_file` (ddp, fsdp2, fsdp2-zero2, fsdp2-offload, deepspeed-zero2-offload); `python -m
vlmrl.presets accelerate/fsdp2` prints where one is.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

SUFFIX = ".yaml"


def _root() -> Traversable:
    return files(__name__)


def _listed(*folders: str) -> list[str]:
    """The names of the YAML files in these folders of the package ("" is its root), folder by folder."""
    names = []
    for folder in folders:
        prefix = f"{folder}/" if folder else ""
        items = (_root() / folder).iterdir() if folder else _root().iterdir()
        names += sorted(prefix + item.name[: -len(SUFFIX)] for item in items if item.name.endswith(SUFFIX))
    return names


def _find(name: str, names: list[str]) -> Traversable | None:
    name = name.removesuffix(SUFFIX).strip("/")
    return _root().joinpath(*f"{name}{SUFFIX}".split("/")) if name in names else None


def preset_names() -> list[str]:
    """Every shipped preset's name: ``numberline``, ``sft/numberline``, ``paper/numberline-llava-7b``, ..."""
    return _listed("", "sft", "paper")


def preset(name: str) -> Traversable | None:
    """The shipped preset of that name (``.yaml`` may be given), or None when there is none."""
    return _find(name, preset_names())


def accelerate_configs() -> list[str]:
    """The shipped `accelerate launch --config_file` files: ``accelerate/ddp``, ``accelerate/fsdp2``, ..."""
    return _listed("accelerate")


def accelerate_config(name: str) -> Traversable | None:
    """The shipped accelerate config file of that name (``accelerate/fsdp2`` or ``fsdp2``), or None."""
    name = name.strip("/")
    return _find(name if name.startswith("accelerate/") else f"accelerate/{name}", accelerate_configs())
