"""Loading a local Hugging Face VLM folder as a trainable `Policy`.

One code path for every family and size: the tiny embedded models are saved in the same
format as a real LLaVA or Qwen-VL checkpoint, so what the tests exercise is what trains a
7B model. Nothing is fetched from a hub (`local_files_only`), and a folder that is missing,
incomplete or of an unsupported architecture is one clear error naming the problem.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForImageTextToText

from vlmrl.errors import UsageError
from vlmrl.policy.families import family_of, load_processor, suppressed_token_ids
from vlmrl.policy.parts import TRAINABLE_CHOICES, lora_targets, set_full_finetuning
from vlmrl.policy.policy import Policy
from vlmrl.policy.tiny import demo_model, quiet_progress_bars

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
SMALL_MODEL_BYTES = 200 * 2**20
"""Below this, loading shows no progress bar: it takes a blink."""
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


@dataclass(frozen=True)
class LoraSettings:
    """LoRA on every linear layer of the trained parts (the paper: r=128, alpha=256, dropout 0.05)."""

    rank: int = 128
    alpha: int = 256
    dropout: float = 0.05


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """float32 on CPU (exact and fast enough), bfloat16 on GPU (the paper's 7B recipe)."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def check_model_folder(folder: Path) -> None:
    """Fail early, in one line, on a folder that cannot be a VLM checkpoint."""
    hint = "give a local Hugging Face model folder, or build a tiny one with `vlmrl init-model`"
    if not folder.exists():
        raise UsageError(f"model folder {str(folder)!r} does not exist; {hint}")
    if not folder.is_dir():
        raise UsageError(f"model path {str(folder)!r} is a file, not a folder; {hint}")
    if not (folder / "config.json").is_file():
        raise UsageError(f"model folder {str(folder)!r} has no config.json, so it is not a Hugging Face model; {hint}")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        raise UsageError(
            f"model folder {str(folder)!r} has no weights (model.safetensors or a shard index); "
            "the download or copy is incomplete"
        )
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UsageError(f"model folder {str(folder)!r} has no tokenizer files; the download or copy is incomplete")
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as error:
        raise UsageError(f"model folder {str(folder)!r} has an unreadable config.json ({error})") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise UsageError(f"config.json in {str(folder)!r} names no model_type; it is not a Hugging Face model config")


def load_policy(
    model: str | Path | None = None,
    *,
    lora: LoraSettings | None = None,
    trainable: str = "language+projector",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    gradient_checkpointing: bool = False,
) -> Policy:
    """A `Policy` over the model in a local folder (by default the embedded `demo` tiny model).

    `lora` adapts every linear layer of the `trainable` parts (``language``,
    ``language+projector`` or ``all``); without it those parts are fully fine-tuned and
    the rest frozen. The value head always trains.
    """
    folder = Path(model).expanduser() if model is not None else demo_model()
    check_model_folder(folder)
    if trainable not in TRAINABLE_CHOICES:
        raise UsageError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}, not {trainable!r}")
    try:
        family = family_of(AutoConfig.from_pretrained(folder, local_files_only=True))
    except ValueError as error:
        raise UsageError(f"model folder {str(folder)!r}: {error}") from None
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    small = sum(f.stat().st_size for f in folder.glob("*.safetensors")) < SMALL_MODEL_BYTES
    try:
        with quiet_progress_bars() if small else contextlib.nullcontext():
            network = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True, dtype=dtype)
        processor = load_processor(folder)
    except (OSError, ValueError, KeyError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UsageError(f"cannot load model folder {str(folder)!r}: {first_line}") from None
    network.to(device)
    if lora is not None:
        network = get_peft_model(
            network,
            LoraConfig(
                r=lora.rank,
                lora_alpha=lora.alpha,
                lora_dropout=lora.dropout,
                target_modules=lora_targets(network, trainable),
                bias="none",
            ),
        )
    else:
        set_full_finetuning(network, trainable)
    if gradient_checkpointing:
        network.activation_checkpointing_enable({"use_reentrant": False})
    return Policy(network, processor, family, suppressed_token_ids(processor.tokenizer, family))
