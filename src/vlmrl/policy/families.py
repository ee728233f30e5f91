"""What differs between the supported VLM families, in one place.

Everything else in `vlmrl.policy` goes through `transformers` Auto classes; the few facts
that do differ per family (which model types it covers, its chat format, the image
placeholder tokens a model must never generate, the extra forward inputs its processor
returns) live here as data.

What each family's processor returns for one image and one prompt:

- llava:      input_ids, attention_mask, pixel_values (B, 3, H, W).
- llava-next: input_ids, attention_mask, pixel_values (B, crops, 3, H, W), image_sizes (B, 2);
              `image_sizes` must reach the forward: the number of image features depends on it.
- qwen2-vl / qwen2.5-vl: input_ids, attention_mask, pixel_values (patches, C*T*P*P) flattened over
              the batch, image_grid_thw (B, 3), mm_token_type_ids (B, L): 1 at image tokens. The
              forward builds M-RoPE position ids from `mm_token_type_ids`; when tokens are appended
              (generated), pad it with zeros.

Loading a processor: `load_processor` below. On a machine without torchvision the stock
Qwen2-VL / Qwen2.5-VL processors cannot be built (their video-processor slot needs
torchvision), so there the processor is an image-only subclass, loaded from the same folder.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from transformers import AutoConfig, AutoProcessor, Qwen2_5_VLProcessor, Qwen2VLProcessor
from transformers.utils import is_torchvision_available

LLAVA_TOKENS = ("<unk>", "<s>", "</s>", "<pad>", "<image>")
QWEN_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
)
LOADING: dict = {"local_files_only": True, "trust_remote_code": False}
"""Keyword arguments of every `from_pretrained` on a model folder: nothing fetched, no code of the folder run
(never a prompt asking whether it may: `trust_remote_code=None` would ask on a terminal)."""

QWEN_PLACEHOLDERS = ("<|vision_start|>", "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>")

# Chat templates: one user turn of images then text, the families' real formats (the
# released templates carry more features, e.g. tools and video; these keep the format).
LLAVA_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'system' %}{% for c in message['content'] %}{{ c['text'] }}{% endfor %}{{ ' ' }}"
    "{% else %}{{ message['role'].upper() + ': ' }}"
    "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] + ' ' }}{% endfor %}"
    "{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}{{ 'ASSISTANT:' }}{% endif %}"
)
LLAVA_NEXT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' }}"
    "{% for c in message['content'] if c['type'] == 'image' %}{{ '<image>\n' }}{% endfor %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ c['text'] }}{% endfor %}{{ ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}"
    "{% for c in message['content'] if c['type'] == 'text' %}{{ ' ' + c['text'] + '</s>' }}{% endfor %}"
    "{% endif %}{% endfor %}"
)
QWEN_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' }}"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for c in message['content'] %}"
    "{% if c['type'] == 'image' %}{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{% elif c['type'] == 'video' %}{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{% elif c['type'] == 'text' %}{{ c['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '<|im_end|>\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


@dataclass(frozen=True)
class Family:
    name: str
    model_types: tuple[str, ...]
    """`config.model_type` values this family covers."""
    model_class: str
    """The `transformers` class of the model."""
    chat_template: str
    """Fallback chat template (Jinja), for folders that ship none."""
    image_token: str
    """The placeholder the processor expands into one token per image feature."""
    placeholders: tuple[str, ...]
    """Tokens the model must never generate: once sampled, re-scoring the text fails."""
    extra_inputs: tuple[str, ...]
    """Forward inputs besides input_ids, attention_mask and pixel_values."""
    special_tokens: tuple[str, ...]
    """A tiny model's special tokens, ids 0, 1, 2, ... in this order."""
    bos: str | None
    eos: str
    pad: str
    unk: str | None


LLAVA = Family(
    name="llava",
    model_types=("llava",),
    model_class="LlavaForConditionalGeneration",
    chat_template=LLAVA_TEMPLATE,
    image_token="<image>",
    placeholders=("<image>",),
    extra_inputs=(),
    special_tokens=LLAVA_TOKENS,
    bos="<s>",
    eos="</s>",
    pad="<pad>",
    unk="<unk>",
)
QWEN2_VL = Family(
    name="qwen2-vl",
    model_types=("qwen2_vl",),
    model_class="Qwen2VLForConditionalGeneration",
    chat_template=QWEN_TEMPLATE,
    image_token="<|image_pad|>",
    placeholders=QWEN_PLACEHOLDERS,
    extra_inputs=("image_grid_thw", "mm_token_type_ids"),
    special_tokens=QWEN_TOKENS,
    bos=None,
    eos="<|im_end|>",
    pad="<|endoftext|>",
    unk=None,
)
FAMILIES: dict[str, Family] = {
    "llava": LLAVA,
    "llava-next": replace(
        LLAVA,
        name="llava-next",
        model_types=("llava_next",),
        model_class="LlavaNextForConditionalGeneration",
        chat_template=LLAVA_NEXT_TEMPLATE,
        extra_inputs=("image_sizes",),
    ),
    "qwen2-vl": QWEN2_VL,
    "qwen2.5-vl": replace(
        QWEN2_VL, name="qwen2.5-vl", model_types=("qwen2_5_vl",), model_class="Qwen2_5_VLForConditionalGeneration"
    ),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown model family {name!r}; supported families: {', '.join(FAMILIES)}")
    return FAMILIES[name]


def family_for_model_type(model_type: object) -> str | None:
    """The family covering a config's `model_type`, or None."""
    return next((family.name for family in FAMILIES.values() if model_type in family.model_types), None)


def family_of(config) -> str:
    """The family of a loaded model config, from its `model_type`."""
    model_type = getattr(config, "model_type", None)
    family = family_for_model_type(model_type)
    if family is not None:
        return family
    supported = ", ".join(f"{f.name} ({'/'.join(f.model_types)})" for f in FAMILIES.values())
    raise ValueError(f"unsupported model type {model_type!r}; supported families: {supported}")


def suppressed_token_ids(tokenizer, family: str) -> list[int]:
    """Ids of the family's placeholder tokens that this tokenizer has: to suppress in sampling."""
    vocab = tokenizer.get_vocab()
    return sorted(vocab[token] for token in get_family(family).placeholders if token in vocab)


class ImageOnlyQwen2VLProcessor(Qwen2VLProcessor):
    """Qwen2-VL's processor without the video slot, which needs torchvision to exist."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs) -> None:
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):
    """Qwen2.5-VL's processor without the video slot, which needs torchvision to exist."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs) -> None:
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


IMAGE_ONLY_PROCESSORS = {"qwen2-vl": ImageOnlyQwen2VLProcessor, "qwen2.5-vl": ImageOnlyQwen2_5_VLProcessor}


def load_processor(path: str | Path):
    """The processor of a model folder (tiny or real), through `AutoProcessor` where it can be
    built; for Qwen families on a machine without torchvision, the image-only processor.
    A folder that ships no chat template gets the family's. Local files only, no code from the folder.
    """
    family = family_of(AutoConfig.from_pretrained(path, **LOADING))
    if family in IMAGE_ONLY_PROCESSORS and not is_torchvision_available():
        processor = IMAGE_ONLY_PROCESSORS[family].from_pretrained(path, **LOADING)
    else:
        processor = AutoProcessor.from_pretrained(path, **LOADING)
    if not getattr(processor, "chat_template", None):
        processor.chat_template = FAMILIES[family].chat_template
    return processor
