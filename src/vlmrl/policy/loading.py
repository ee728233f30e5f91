"""Loading a local Hugging Face VLM folder as a trainable `Policy`.

One code path for every family and size: the tiny embedded models are saved in the same
format as a real LLaVA or Qwen-VL checkpoint, so what the tests exercise is what trains a
7B model. Nothing is fetched from a hub, no code from the folder runs and no pickle is read
(`vlmrl.policy.folder`), and a folder that is missing, incomplete, damaged or of an unsupported
architecture is one clear error naming the problem, before the model is built.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForImageTextToText

from vlmrl.infra.errors import UsageError, first_line
from vlmrl.policy.families import LOADING, load_processor, suppressed_token_ids
from vlmrl.policy.folder import (
    check_loaded,
    check_model_folder,
    check_sizes,
    quiet_progress_bars,
    transformers_quiet,
)
from vlmrl.policy.parts import TRAINABLE_CHOICES, lora_targets, set_full_finetuning
from vlmrl.policy.policy import Policy

SMALL_MODEL_BYTES = 200 * 2**20
"""Below this, loading shows no progress bar: it takes a blink."""


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


def load_policy(
    model: str | Path,
    *,
    lora: LoraSettings | None = None,
    trainable: str = "language+projector",
    device: str | torch.device | None = None,
    dtype: torch.dtype | None = None,
    gradient_checkpointing: bool = False,
) -> Policy:
    """A `Policy` over the model in a local folder (`vlmrl.tiny.model_or_demo` gives the embedded
    `demo` tiny model's when a config names none).

    `lora` adapts every linear layer of the `trainable` parts (``language``,
    ``language+projector`` or ``all``); without it those parts are fully fine-tuned and
    the rest frozen. The value head always trains.
    """
    folder = Path(model).expanduser()
    checked = check_model_folder(folder)
    if trainable not in TRAINABLE_CHOICES:
        raise UsageError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}, not {trainable!r}")
    try:
        config = AutoConfig.from_pretrained(folder, **LOADING)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise UsageError(f"model folder {str(folder)!r}: {first_line(error)}") from None
    check_sizes(checked, config)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    small = sum(f.stat().st_size for f in checked.weight_files) < SMALL_MODEL_BYTES
    try:
        with quiet_progress_bars() if small else contextlib.nullcontext(), transformers_quiet():
            network, info = AutoModelForImageTextToText.from_pretrained(
                folder,
                config=config,
                **LOADING,
                use_safetensors=True,
                dtype=dtype,
                output_loading_info=True,
                ignore_mismatched_sizes=True,
            )
        check_loaded(checked, info)
        processor = load_processor(folder)
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, SafetensorError) as error:
        raise UsageError(f"cannot load model folder {str(folder)!r}: {first_line(error)}") from None
    return wrap_network(
        network,
        processor,
        checked.family,
        lora=lora,
        trainable=trainable,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
    )


def wrap_network(
    network: torch.nn.Module,
    processor,
    family: str,
    *,
    lora: LoraSettings | None,
    trainable: str,
    device: torch.device,
    gradient_checkpointing: bool,
) -> Policy:
    """A loaded (or built) network as a `Policy`: on `device`, with LoRA adapters or its `trainable`
    parts fully trainable, optionally recomputing activations in backward."""
    if trainable not in TRAINABLE_CHOICES:
        raise UsageError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}, not {trainable!r}")
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
