"""Models of a family's real shape with random weights, built in memory: speed and memory figures of a
7B model need its architecture, not its checkpoint (nothing is downloaded).

`test` and `demo` are the tiny builds (`vlmrl.tiny.build`); `7b` is the family's published 7B
architecture, layer for layer, with its processor's real image sizes (so as many image tokens as the
checkpoint would see):

- llava: LLaVA-1.5-7B (Vicuna-7B: Llama, 32 layers of 4096; CLIP ViT-L/14 at 336 px, 576 image tokens).
- llava-next: LLaVA-1.6-Mistral-7B (Mistral-7B: 32 layers of 4096, 8 KV heads; the same CLIP tower,
  any-resolution crops of 336 px).
- qwen2-vl: Qwen2-VL-7B-Instruct (28 layers of 3584, 4 KV heads; a 32-block ViT of 1280, 14 px patches
  merged 2x2).
- qwen2.5-vl: Qwen2.5-VL-7B-Instruct (the same language model; a 32-block windowed ViT, SwiGLU).

The tokenizer stays the tiny one (trained on the games' text; the real ones are not in the
package), so only the embedding tables' row counts are the real vocabularies'. Random weights
sample tokens the tokenizer does not have; they decode to nothing, and answers run to their limit,
which is what a throughput measurement wants (every answer of full length).
"""

from __future__ import annotations

import copy
from typing import Any

SHAPES = ("test", "demo", "7b")

CLIP_336 = dict(
    model_type="clip_vision_model",
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
    projection_dim=768,
    hidden_act="quick_gelu",
)
LLAVA_NEXT_PINPOINTS = [[336, 672], [672, 336], [672, 672], [1008, 336], [336, 1008]]
QWEN_7B_TEXT = dict(
    vocab_size=152064,
    hidden_size=3584,
    intermediate_size=18944,
    num_hidden_layers=28,
    num_attention_heads=28,
    num_key_value_heads=4,
    max_position_embeddings=32768,
    rms_norm_eps=1e-6,
    rope_parameters={"rope_type": "default", "rope_theta": 1_000_000.0, "mrope_section": [16, 24, 24]},
    use_sliding_window=False,
)
SEVEN_B: dict[str, dict[str, Any]] = {
    "llava": dict(
        text=dict(
            model_type="llama",
            vocab_size=32064,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=4096,
            rms_norm_eps=1e-5,
        ),
        vision=CLIP_336,
    ),
    "llava-next": dict(
        text=dict(
            model_type="mistral",
            vocab_size=32064,
            hidden_size=4096,
            intermediate_size=14336,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=8,
            max_position_embeddings=32768,
            rms_norm_eps=1e-5,
            rope_theta=1_000_000.0,
            sliding_window=None,
        ),
        vision=CLIP_336,
    ),
    "qwen2-vl": dict(
        text=QWEN_7B_TEXT,
        vision=dict(depth=32, embed_dim=1280, hidden_size=3584, num_heads=16, mlp_ratio=4),
    ),
    "qwen2.5-vl": dict(
        text=QWEN_7B_TEXT,
        vision=dict(
            depth=32,
            hidden_size=1280,
            intermediate_size=3420,
            out_hidden_size=3584,
            num_heads=16,
            window_size=112,
            fullatt_block_indexes=[7, 15, 23, 31],
        ),
    ),
}
"""The parts of each family's 7B config.json that set its shape (the rest: the tiny build's, e.g. token ids)."""


def check_shape(shape: str) -> str:
    if shape not in SHAPES:
        raise ValueError(f"unknown model shape {shape!r}; valid shapes: {', '.join(SHAPES)}")
    return shape


def shaped_parts(family: str, shape: str):
    """(config, processor) of `family` at `shape`; the tokenizer is the tiny build's of that size
    (`demo`'s for 7b)."""
    from vlmrl.tiny.build import build_processor, build_tokenizer, tiny_config

    check_shape(shape)
    tokenizer = build_tokenizer(family, "test" if shape == "test" else "demo")
    config = tiny_config(family, "test" if shape == "test" else "demo", tokenizer)
    processor = build_processor(family, tokenizer)
    if shape in ("test", "demo"):
        return config, processor
    return seven_b_config(family, config), seven_b_processor(family, processor)


def seven_b_config(family: str, tiny):
    """The tiny build's config with every shape-setting field replaced by the 7B checkpoint's, rebuilt
    from its dictionary so that derived fields (head sizes, per-layer types) follow the new shape."""
    spec = SEVEN_B[family]
    fields = tiny.to_dict()
    text_key = "text_config"
    derived = ("head_dim", "layer_types", "max_window_layers")
    fields[text_key] = {k: v for k, v in fields[text_key].items() if k not in derived} | {
        k: v for k, v in spec["text"].items() if k != "model_type"
    }
    fields["vision_config"] = fields["vision_config"] | {k: v for k, v in spec["vision"].items() if k != "model_type"}
    if family in ("llava", "llava-next"):
        fields["vision_feature_layer"] = -2  # the released checkpoints read the second-to-last layer
        if family == "llava":
            fields["image_seq_length"] = (336 // 14) ** 2
        else:
            fields["image_grid_pinpoints"] = LLAVA_NEXT_PINPOINTS
    for key in ("model_type", "transformers_version", "architectures"):
        fields.pop(key, None)
    return type(tiny)(**fields)


def seven_b_processor(family: str, tiny):
    """The tiny build's processor with the 7B checkpoint's image sizes."""
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
    from transformers.models.llava_next.image_processing_pil_llava_next import LlavaNextImageProcessorPil
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    processor = copy.deepcopy(tiny)
    square = {"height": 336, "width": 336}
    if family == "llava":
        processor.image_processor = CLIPImageProcessorPil(size={"shortest_edge": 336}, crop_size=square)
    elif family == "llava-next":
        processor.image_processor = LlavaNextImageProcessorPil(
            size={"shortest_edge": 336}, crop_size=square, image_grid_pinpoints=LLAVA_NEXT_PINPOINTS
        )
    else:  # the released preprocessor's pixel budget: 56*56 to 28*28*1280
        processor.image_processor = Qwen2VLImageProcessorPil(
            size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280},
            patch_size=14,
            merge_size=2,
            temporal_patch_size=2,
        )
    return processor


def count_shaped_parameters(family: str, shape: str) -> int:
    """Parameters of the model at `shape`, counted on the meta device (no memory, no time)."""
    import torch
    from transformers import AutoModelForImageTextToText

    config, _ = shaped_parts(family, shape)
    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(config)
    return sum(p.numel() for p in model.parameters())


def shaped_policy(
    family: str,
    shape: str,
    *,
    lora=None,
    trainable: str = "language+projector",
    device=None,
    dtype=None,
    gradient_checkpointing: bool = False,
    seed: int = 0,
):
    """A `Policy` over a random model of `family` at `shape`, built directly on `device` in `dtype`
    (the defaults of a loaded folder: float32 on CPU, bfloat16 on GPU), as `load_policy` would give it."""
    import torch
    from transformers import AutoModelForImageTextToText

    from vlmrl.policy.families import get_family
    from vlmrl.policy.loading import default_device, default_dtype, wrap_network
    from vlmrl.tiny.build import generation_ids

    config, processor = shaped_parts(family, shape)
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    with torch.random.fork_rng(devices=[]), torch.device(device):
        torch.manual_seed(seed)
        network = AutoModelForImageTextToText.from_config(config, dtype=dtype).eval()
    network.generation_config.update(**generation_ids(get_family(family), processor.tokenizer))
    return wrap_network(
        network,
        processor,
        family,
        lora=lora,
        trainable=trainable,
        device=device,
        gradient_checkpointing=gradient_checkpointing,
    )
