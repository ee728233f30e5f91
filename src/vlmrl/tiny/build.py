"""Tiny, randomly initialised VLMs of each supported family, built offline.

They exist so that tests and quick demos can run the whole pipeline (processor, chat
template, generation, re-scoring, PPO, checkpoints) on a CPU in seconds, with no download.
They have NO pretrained weights: every parameter is random (seeded), and the tokenizer is
a byte-level BPE trained on the games' own prompts and answers (`vlmrl.tiny.tokenizer`).

A build is saved as an ordinary Hugging Face model folder (config.json, model.safetensors,
tokenizer, processor config, chat template), so the code that loads a real checkpoint
loads these too: `AutoModelForImageTextToText.from_pretrained(dir)` and
`vlmrl.policy.families.load_processor(dir)` (which is `AutoProcessor.from_pretrained`
except for Qwen families on machines without torchvision).

Every image is resized to 112x112 (the games render 300x300): 64 image tokens for
LLaVA, 136 for LLaVA-NeXT (64 base + 8 rows of 8 + a newline each), 16 for Qwen2-VL
and Qwen2.5-VL (8x8 patches merged 2x2).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from jinja2.sandbox import ImmutableSandboxedEnvironment
from safetensors import safe_open
from transformers import (
    AutoModelForImageTextToText,
    LlavaConfig,
    LlavaNextConfig,
    LlavaNextProcessor,
    LlavaProcessor,
    PretrainedConfig,
    PreTrainedTokenizerFast,
    Qwen2_5_VLConfig,
    Qwen2VLConfig,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from vlmrl.policy.families import IMAGE_ONLY_PROCESSORS, Family, get_family
from vlmrl.policy.folder import quiet_progress_bars
from vlmrl.tiny.tokenizer import game_corpus, train_tokenizer
from vlmrl.tiny.vision import MARKER, pretrain_vision_tower

SIZES = ("test", "demo")
TOKENIZER_VERSION = 2
"""Raised whenever the tokenizer's corpus changes (2: ALFWorld text), so a cached demo model is rebuilt."""
IMAGE_SIZE = 112
PATCH_SIZE = 14
MERGE_SIZE = 2
MAX_POSITIONS = 2048
LLAVA_NEXT_PINPOINTS = [[IMAGE_SIZE, IMAGE_SIZE]]
"""One crop the size of the base image: the smallest grid, so few image tokens."""


@dataclass(frozen=True)
class Dims:
    vocab: int
    """Requested BPE vocabulary; the games' text saturates it below 1,200 tokens either way."""
    text_hidden: int
    text_layers: int
    text_heads: int
    text_kv_heads: int
    text_ffn: int
    vision_hidden: int
    vision_layers: int
    vision_heads: int
    vision_ffn: int


DIMS = {
    "test": Dims(
        vocab=2048,
        text_hidden=128,
        text_layers=2,
        text_heads=4,
        text_kv_heads=2,
        text_ffn=384,
        vision_hidden=64,
        vision_layers=2,
        vision_heads=4,
        vision_ffn=256,
    ),
    "demo": Dims(
        vocab=4096,
        text_hidden=256,
        text_layers=4,
        text_heads=4,
        text_kv_heads=4,
        text_ffn=1024,
        vision_hidden=128,
        vision_layers=3,
        vision_heads=4,
        vision_ffn=512,
    ),
}
"""`test`: ~1M parameters, for unit tests. `demo`: ~5.4-6M, trains on 2 CPU cores."""


def check_size(size: str) -> Dims:
    if size not in DIMS:
        raise ValueError(f"unknown tiny model size {size!r}; valid sizes: {', '.join(SIZES)}")
    return DIMS[size]


# ---------------------------------------------------------------- tokenizer and processor
def _strip_specials(text: str, family: Family) -> str:
    for token in family.special_tokens:
        text = text.replace(token, "")
    return text


def tokenizer_corpus(family: Family) -> list[str]:
    """The games' answers and their prompts as the family's chat template wraps them,
    special tokens removed (the trainer must not learn merges of their pieces)."""
    corpus = game_corpus()
    template = ImmutableSandboxedEnvironment().from_string(family.chat_template)
    wrapped = [
        template.render(
            messages=[{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}],
            add_generation_prompt=True,
        )
        for prompt in corpus.prompts
    ]
    return [_strip_specials(text, family) for text in wrapped] + list(corpus.answers)


def build_tokenizer(family: str, size: str) -> PreTrainedTokenizerFast:
    """The family's tiny tokenizer, with its special tokens at ids 0, 1, 2, ..."""
    spec, dims = get_family(family), check_size(size)
    backend = train_tokenizer(tokenizer_corpus(spec), dims.vocab, spec.special_tokens)
    named = {spec.bos, spec.eos, spec.pad, spec.unk}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=spec.bos,
        eos_token=spec.eos,
        pad_token=spec.pad,
        unk_token=spec.unk,
        extra_special_tokens=[token for token in spec.special_tokens if token not in named],
        add_bos_token=spec.bos is not None,
        add_eos_token=False,
        clean_up_tokenization_spaces=False,
        model_max_length=MAX_POSITIONS,
        chat_template=spec.chat_template,
    )


def build_processor(family: str, tokenizer: PreTrainedTokenizerFast):
    """The family's processor around `tokenizer`, resizing every image to 112x112."""
    spec = get_family(family)
    square = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    llava_args = dict(
        patch_size=PATCH_SIZE,
        vision_feature_select_strategy="default",
        image_token=spec.image_token,
        num_additional_image_tokens=1,  # CLIP's CLS token, dropped by the "default" strategy
        chat_template=spec.chat_template,
    )
    if family == "llava":
        images = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=square)
        return LlavaProcessor(image_processor=images, tokenizer=tokenizer, **llava_args)
    if family == "llava-next":
        images = LlavaNextImageProcessorPil(
            size={"shortest_edge": IMAGE_SIZE}, crop_size=square, image_grid_pinpoints=LLAVA_NEXT_PINPOINTS
        )
        return LlavaNextProcessor(image_processor=images, tokenizer=tokenizer, **llava_args)
    # The pixel budget sits a little above 112*112: exactly 112*112 rounds 300x300 down to 84x84.
    images = Qwen2VLImageProcessorPil(
        size={"shortest_edge": IMAGE_SIZE * IMAGE_SIZE // 4, "longest_edge": IMAGE_SIZE * (IMAGE_SIZE + PATCH_SIZE)},
        patch_size=PATCH_SIZE,
        merge_size=MERGE_SIZE,
        temporal_patch_size=2,
    )
    return IMAGE_ONLY_PROCESSORS[family](image_processor=images, tokenizer=tokenizer, chat_template=spec.chat_template)


# ---------------------------------------------------------------- model config
def _llama_like(dims: Dims, vocab: int, ids: dict[str, int | None]) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=dims.text_hidden,
        intermediate_size=dims.text_ffn,
        num_hidden_layers=dims.text_layers,
        num_attention_heads=dims.text_heads,
        num_key_value_heads=dims.text_kv_heads,
        max_position_embeddings=MAX_POSITIONS,
        tie_word_embeddings=False,
        **ids,
    )


def _clip_vision(dims: Dims) -> dict:
    return dict(
        model_type="clip_vision_model",
        hidden_size=dims.vision_hidden,
        intermediate_size=dims.vision_ffn,
        num_hidden_layers=dims.vision_layers,
        num_attention_heads=dims.vision_heads,
        image_size=IMAGE_SIZE,
        patch_size=PATCH_SIZE,
        projection_dim=dims.vision_hidden,
    )


def tiny_config(family: str, size: str, tokenizer: PreTrainedTokenizerFast) -> PretrainedConfig:
    """The model config of a tiny build, its token ids taken from `tokenizer`."""
    spec, dims = get_family(family), check_size(size)
    vocab = len(tokenizer)
    token_id = tokenizer.convert_tokens_to_ids
    ids = dict(
        bos_token_id=tokenizer.bos_token_id if spec.bos else None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if family in ("llava", "llava-next"):
        common = dict(
            vision_config=_clip_vision(dims),
            image_token_index=token_id(spec.image_token),
            vision_feature_layer=-1,
            vision_feature_select_strategy="default",
            tie_word_embeddings=False,
            dtype="float32",
        )
        if family == "llava":
            text = dict(model_type="llama", **_llama_like(dims, vocab, ids))
            return LlavaConfig(text_config=text, image_seq_length=(IMAGE_SIZE // PATCH_SIZE) ** 2, **common)
        text = dict(model_type="mistral", sliding_window=None, **_llama_like(dims, vocab, ids))
        return LlavaNextConfig(text_config=text, image_grid_pinpoints=LLAVA_NEXT_PINPOINTS, **common)
    return _qwen_config(family, dims, vocab, ids, tokenizer)


def _qwen_config(family: str, dims: Dims, vocab: int, ids: dict, tokenizer) -> PretrainedConfig:
    half = dims.text_hidden // dims.text_heads // 2
    spatial = (half - half // 4) // 2  # M-RoPE sections (time, height, width) sum to head_dim / 2: 16/24/24 of 64
    rope = {"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [half - 2 * spatial, spatial, spatial]}
    text = _llama_like(dims, vocab, ids)
    text.update(rope_parameters=rope, use_sliding_window=False)
    vision_common = dict(
        depth=dims.vision_layers,
        num_heads=dims.vision_heads,
        patch_size=PATCH_SIZE,
        spatial_merge_size=MERGE_SIZE,
        temporal_patch_size=2,
    )
    if family == "qwen2-vl":
        vision = dict(embed_dim=dims.vision_hidden, hidden_size=dims.text_hidden, mlp_ratio=4, **vision_common)
        config_class = Qwen2VLConfig
    else:
        vision = dict(
            hidden_size=dims.vision_hidden,
            intermediate_size=dims.vision_ffn,
            out_hidden_size=dims.text_hidden,
            window_size=IMAGE_SIZE,
            fullatt_block_indexes=[dims.vision_layers - 1],
            **vision_common,
        )
        config_class = Qwen2_5_VLConfig
    token_id = tokenizer.convert_tokens_to_ids
    return config_class(
        text_config=text,
        vision_config=vision,
        image_token_id=token_id("<|image_pad|>"),
        video_token_id=token_id("<|video_pad|>"),
        vision_start_token_id=token_id("<|vision_start|>"),
        vision_end_token_id=token_id("<|vision_end|>"),
        tie_word_embeddings=False,
        dtype="float32",
    )


def build_model(config: PretrainedConfig, seed: int) -> torch.nn.Module:
    """A float32 model with seeded random weights; the global RNG state is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    return model.eval()


# ---------------------------------------------------------------- saving
def build_tiny_model(
    family: str,
    size: str,
    out_dir: str | Path,
    seed: int = 0,
    pretrain_vision: int = 0,
    progress: Callable[[int, dict[str, float]], Any] | None = None,
) -> Path:
    """Build a tiny random model of `family` and save it as a Hugging Face folder at `out_dir`.

    With `pretrain_vision` > 0 its vision tower is then trained for that many steps to read the
    games' images (`vlmrl.tiny.vision`; `progress(step, metrics)` follows it), the tiny
    counterpart of a real VLM's pretrained CLIP tower. The folder is written next to `out_dir`
    first and renamed into place once complete. An existing `out_dir` is replaced only if it is
    empty or a previous tiny build.
    """
    spec = get_family(family)
    check_size(size)
    out = Path(out_dir).expanduser().absolute()
    _check_replaceable(out)
    tokenizer = build_tokenizer(family, size)
    processor = build_processor(family, tokenizer)
    config = tiny_config(family, size, tokenizer)
    model = build_model(config, seed)
    model.generation_config.update(**generation_ids(spec, tokenizer))
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    try:
        with quiet_progress_bars():
            model.save_pretrained(staging)
        processor.save_pretrained(staging)
        if family in IMAGE_ONLY_PROCESSORS:
            _restore_processor_class(staging, spec)
        marker = {
            "family": family,
            "size": size,
            "seed": seed,
            "tokenizer_version": TOKENIZER_VERSION,
            "note": "random weights, no pretraining",
        }
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if pretrain_vision > 0:
            pretrain_vision_tower(staging, steps=pretrain_vision, seed=seed, progress=progress)
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def generation_ids(spec: Family, tokenizer) -> dict:
    eos = [tokenizer.eos_token_id]
    if spec.pad != spec.eos and spec.bos is None:  # Qwen: <|endoftext|> also ends a text
        eos.append(tokenizer.pad_token_id)
    return dict(
        bos_token_id=tokenizer.bos_token_id if spec.bos else None,
        eos_token_id=eos if len(eos) > 1 else eos[0],
        pad_token_id=tokenizer.pad_token_id,
    )


def _check_replaceable(out: Path) -> None:
    if out.is_file() or out.is_symlink():
        raise ValueError(f"cannot build a tiny model at {out}: it is a file")
    if out.is_dir() and any(out.iterdir()) and not (out / MARKER).is_file():
        raise ValueError(f"refusing to overwrite {out}: it is not empty and not a previous tiny build (no {MARKER})")


def _replace(staging: Path, out: Path) -> None:
    """Move the finished build into place; a previous build there is removed only after."""
    if not out.exists():
        staging.rename(out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
    old.rmdir()
    out.rename(old)
    staging.rename(out)
    shutil.rmtree(old, ignore_errors=True)


def _restore_processor_class(folder: Path, spec: Family) -> None:
    """Name the stock Qwen processor in the saved files (the image-only subclass saved its own
    name), and describe the video processor, so machines with torchvision get the stock class."""
    real = {"qwen2-vl": "Qwen2VLProcessor", "qwen2.5-vl": "Qwen2_5_VLProcessor"}[spec.name]
    path = folder / "processor_config.json"
    processor = json.loads(path.read_text())
    processor["processor_class"] = real
    images = processor["image_processor"]
    video_keys = ("do_convert_rgb", "do_normalize", "do_rescale", "do_resize", "image_mean", "image_std", "merge_size")
    video = {key: images[key] for key in video_keys if key in images}
    video.update(
        video_processor_type="Qwen2VLVideoProcessor",
        patch_size=images["patch_size"],
        temporal_patch_size=images["temporal_patch_size"],
        size=images["size"],
    )
    processor["video_processor"] = video
    path.write_text(json.dumps(processor, indent=2, sort_keys=True) + "\n")
    tokenizer_path = folder / "tokenizer_config.json"
    tokenizer = json.loads(tokenizer_path.read_text())
    tokenizer["processor_class"] = real
    tokenizer_path.write_text(json.dumps(tokenizer, indent=2, sort_keys=True) + "\n")


def read_marker(folder: str | Path) -> dict | None:
    """What a tiny build says of itself (family, size, seed); None for any other folder."""
    path = Path(folder) / MARKER
    return json.loads(path.read_text()) if path.is_file() else None


DEMO_FAMILY = "llava"


def cache_dir() -> Path:
    """Where vlmrl keeps what it builds once per machine (`$VLMRL_CACHE`, else ~/.cache/vlmrl)."""
    return Path(os.environ.get("VLMRL_CACHE", "~/.cache/vlmrl")).expanduser()


DEMO_VISION_STEPS = 1000
"""Vision-tower pretraining of the demo model: ~2 minutes on 2 cores, every label read >= 95%."""


def model_or_demo(model: str | Path | None) -> Path:
    """The model folder a config names, or the embedded demo model's (built on first use) when it names none."""
    return Path(model).expanduser() if model else demo_model()


def demo_model(progress: Callable[[int, dict[str, float]], Any] | None = None) -> Path:
    """The default model: the `demo` tiny LLaVA with a pretrained vision tower, built into the
    cache folder on first use (rebuilt if the cached one predates its vision pretraining or tokenizer)."""
    folder = cache_dir() / "models" / f"{DEMO_FAMILY}-demo"
    marker = read_marker(folder)
    if (
        marker is None
        or (marker.get("family"), marker.get("size")) != (DEMO_FAMILY, "demo")
        or marker.get("vision_pretraining", {}).get("steps") != DEMO_VISION_STEPS
        or marker.get("tokenizer_version") != TOKENIZER_VERSION
    ):
        reporter = (
            nullcontext(progress)
            if progress is not None
            else vision_progress(DEMO_VISION_STEPS, "building the demo model (once): vision tower")
        )
        with reporter as report:
            build_tiny_model(DEMO_FAMILY, "demo", folder, pretrain_vision=DEMO_VISION_STEPS, progress=report)
    return folder


@contextmanager
def vision_progress(steps: int, description: str) -> Iterator[Callable[[int, dict[str, float]], None]]:
    """A progress bar (or periodic lines off a terminal) for vision-tower pretraining."""
    from vlmrl.infra.metrics import ConsoleProgress

    with ConsoleProgress(steps, description, unit="steps", print_every=20) as console:
        yield lambda step, metrics: console.update(step, metrics)


def count_parameters(folder: str | Path) -> int:
    """Parameters stored in a model folder's safetensors files, read from their headers only."""
    total = 0
    for path in sorted(Path(folder).glob("*.safetensors")):
        with safe_open(str(path), framework="pt") as weights:
            total += sum(math.prod(weights.get_slice(name).get_shape()) for name in weights.keys())
    return total
