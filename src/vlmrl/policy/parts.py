"""Which parts of a VLM train: the language model, the projector, the vision tower.

Every family has the same three parts under different names (LLaVA's `vision_tower` and
`multi_modal_projector`, Qwen-VL's `visual` blocks and `visual.merger`). Parameters are
assigned to a part by their module path, so LoRA targets and full fine-tuning agree on
what "the projector" is, for any family.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

Part = Literal["language", "projector", "vision"]
TRAINABLE_CHOICES: tuple[str, ...] = ("language", "language+projector", "all")
PARTS_OF: dict[str, tuple[Part, ...]] = {
    "language": ("language",),
    "language+projector": ("language", "projector"),
    "all": ("language", "projector", "vision"),
}

_PROJECTOR_MARKERS = ("multi_modal_projector", "visual.merger", "mm_projector", "image_newline")
_VISION_MARKERS = ("vision_tower", "visual.", "vision_model")


def part_of(name: str) -> Part:
    """The part a parameter or module belongs to, from its dotted path."""
    if any(marker in name for marker in _PROJECTOR_MARKERS):
        return "projector"
    if any(marker in name for marker in _VISION_MARKERS) or name.endswith("visual"):
        return "vision"
    return "language"


def parts_to_train(trainable: str) -> tuple[Part, ...]:
    if trainable not in PARTS_OF:
        raise ValueError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}, not {trainable!r}")
    return PARTS_OF[trainable]


def lora_targets(model: nn.Module, trainable: str) -> list[str]:
    """Full names of the linear layers LoRA adapts: every linear layer of the chosen parts,
    except the output head (the paper adapts "every linear layer" of the transformer)."""
    parts = parts_to_train(trainable)
    output = model.get_output_embeddings()
    return [
        name
        for name, module in model.named_modules()
        if isinstance(module, nn.Linear) and module is not output and part_of(name) in parts
    ]


def set_full_finetuning(model: nn.Module, trainable: str) -> None:
    """Train every parameter of the chosen parts and freeze the rest."""
    parts = parts_to_train(trainable)
    for name, parameter in model.named_parameters():
        parameter.requires_grad_(part_of(name) in parts)
