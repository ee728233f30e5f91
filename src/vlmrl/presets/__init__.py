"""The presets shipped inside the package, read with `importlib.resources` so that an installed
wheel finds them anywhere: `<game>.yaml` (PPO on the CPU, `vlmrl train --env GAME`),
`sft/<game>.yaml` (the warm-up, `vlmrl sft --env GAME`) and `paper/<game>-llava-7b.yaml` (the
paper's recipe, `vlmrl train --config paper/GAME-llava-7b`). A preset is named by its path
without `.yaml`. Beside them, `accelerate/<layout>.yaml` are config files for `accelerate launch
--config_file` (ddp, fsdp2, fsdp2-zero2, fsdp2-offload); `python -m vlmrl.presets accelerate/fsdp2`
prints where one is.
"""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

SUFFIX = ".yaml"


def _root() -> Traversable:
    return files(__name__)


def preset_names() -> list[str]:
    """Every shipped preset's name: ``numberline``, ``sft/numberline``, ``paper/numberline-llava-7b``, ..."""
    names = []
    for folder, prefix in ((_root(), ""), (_root() / "sft", "sft/"), (_root() / "paper", "paper/")):
        names += sorted(prefix + item.name[: -len(SUFFIX)] for item in folder.iterdir() if item.name.endswith(SUFFIX))
    return names


def preset(name: str) -> Traversable | None:
    """The shipped preset of that name (``.yaml`` may be given), or None when there is none."""
    name = name.removesuffix(SUFFIX).strip("/")
    if name not in preset_names():
        return None
    return _root().joinpath(*f"{name}{SUFFIX}".split("/"))


def accelerate_configs() -> list[str]:
    """The shipped `accelerate launch --config_file` files: ``accelerate/ddp``, ``accelerate/fsdp2``, ..."""
    folder = _root() / "accelerate"
    return sorted(f"accelerate/{item.name[: -len(SUFFIX)]}" for item in folder.iterdir() if item.name.endswith(SUFFIX))


def accelerate_config(name: str) -> Traversable | None:
    """The shipped accelerate config file of that name (``accelerate/fsdp2`` or ``fsdp2``), or None."""
    name = name.removesuffix(SUFFIX).strip("/")
    name = name if name.startswith("accelerate/") else f"accelerate/{name}"
    return _root().joinpath(*f"{name}{SUFFIX}".split("/")) if name in accelerate_configs() else None
