"""Tiny random VLMs: built offline, saved and reloaded like real checkpoints, for every family."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
from transformers.utils import is_torchvision_available

from vlmrl.games import TASKS, get_task, make_env
from vlmrl.policy.families import (
    FAMILIES,
    IMAGE_ONLY_PROCESSORS,
    family_of,
    get_family,
    load_processor,
    suppressed_token_ids,
)
from vlmrl.tiny.build import (
    MARKER,
    SIZES,
    TOKENIZER_VERSION,
    build_model,
    build_processor,
    build_tiny_model,
    build_tokenizer,
    read_marker,
    tiny_config,
)

FAMILY_NAMES = list(FAMILIES)
IMAGE_TOKENS = {"llava": 64, "llava-next": 136, "qwen2-vl": 16, "qwen2.5-vl": 16}
PROMPT_FORMAT = {
    "llava": ("USER: <image>\n", " ASSISTANT:"),
    "llava-next": ("[INST] <image>\n", " [/INST]"),
    "qwen2-vl": (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>",
        "<|im_end|>\n<|im_start|>assistant\n",
    ),
}
PROMPT_FORMAT["qwen2.5-vl"] = PROMPT_FORMAT["qwen2-vl"]


@pytest.fixture(scope="session")
def built(tmp_path_factory) -> dict[str, Path]:
    """Every family at `test` size, seed 0, built once per session."""
    root = tmp_path_factory.mktemp("tiny")
    return {family: build_tiny_model(family, "test", root / family, seed=0) for family in FAMILY_NAMES}


@pytest.fixture(scope="session")
def loaded(built):
    """Model and processor of each build, loaded the way a real checkpoint is."""
    return {
        family: (
            AutoModelForImageTextToText.from_pretrained(path, local_files_only=True).eval(),
            load_processor(path),
        )
        for family, path in built.items()
    }


def chat(processor, prompt: str) -> str:
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)


def game_batch(processor, games=("numberline", "points24")):
    """Rendered game states with their prompts, left-padded like the policy's batches."""
    images, texts = [], []
    for name in games:
        task, env = get_task(name), make_env(name)
        observation, info = env.reset(seed=0)
        images.append(Image.fromarray(observation))
        texts.append(chat(processor, task.prompt(info)))
    return processor(images=images, text=texts, return_tensors="pt", padding=True, padding_side="left")


def image_token_id(config) -> int:
    return config.image_token_id if hasattr(config, "image_token_id") else config.image_token_index


# ---------------------------------------------------------------- save / reload
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_reload_gives_identical_logits(family, loaded):
    model, processor = loaded[family]
    tokenizer = build_tokenizer(family, "test")
    fresh_model = build_model(tiny_config(family, "test", tokenizer), seed=0)
    fresh_inputs = game_batch(build_processor(family, tokenizer))
    inputs = game_batch(processor)
    for key, value in fresh_inputs.items():
        assert torch.equal(value, inputs[key]), key
    with torch.no_grad():
        assert torch.equal(fresh_model(**fresh_inputs).logits, model(**inputs).logits)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_folder_is_an_ordinary_checkpoint(family, built, loaded):
    path = built[family]
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "chat_template.jinja"):
        assert (path / name).is_file(), name
    assert read_marker(path) == {
        "family": family,
        "size": "test",
        "seed": 0,
        "tokenizer_version": TOKENIZER_VERSION,
        "note": "random weights, no pretraining",
    }
    config = AutoConfig.from_pretrained(path, local_files_only=True)
    assert family_of(config) == family
    assert type(loaded[family][0]).__name__ == get_family(family).model_class
    assert loaded[family][0].dtype == torch.float32


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_processor_loads_through_auto_processor_where_it_can(family, built, loaded):
    processor = loaded[family][1]
    if family in IMAGE_ONLY_PROCESSORS and not is_torchvision_available():
        # The stock Qwen processors need torchvision for their video slot: load_processor
        # falls back to the image-only subclass, and the saved folder still names the stock class.
        assert isinstance(processor, IMAGE_ONLY_PROCESSORS[family])
        saved = json.loads((built[family] / "processor_config.json").read_text())
        assert saved["processor_class"] == IMAGE_ONLY_PROCESSORS[family].__mro__[1].__name__
        with pytest.raises(ImportError):
            AutoProcessor.from_pretrained(built[family], local_files_only=True)
    else:
        auto = AutoProcessor.from_pretrained(built[family], local_files_only=True)
        assert type(auto) is type(processor)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_chat_template_gives_the_family_format(family, loaded):
    processor = loaded[family][1]
    start, end = PROMPT_FORMAT[family]
    assert chat(processor, "Which action?") == f"{start}Which action?{end}"


# ---------------------------------------------------------------- image tokens, generation
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_image_tokens_match_the_model_and_generate_runs(family, loaded):
    model, processor = loaded[family]
    inputs = game_batch(processor)
    image_tokens = (inputs["input_ids"] == image_token_id(model.config)).sum(dim=1)
    assert image_tokens.tolist() == [IMAGE_TOKENS[family]] * 2
    for name in get_family(family).extra_inputs:
        assert name in inputs, name
    suppressed = suppressed_token_ids(processor.tokenizer, family)
    assert len(suppressed) == len(get_family(family).placeholders)
    with torch.no_grad():
        assert model(**inputs).logits.shape[:2] == inputs["input_ids"].shape
        out = model.generate(
            **inputs,
            max_new_tokens=4,
            min_new_tokens=4,
            do_sample=True,
            suppress_tokens=suppressed,
            pad_token_id=processor.tokenizer.pad_token_id,
        )
    new = out[:, inputs["input_ids"].shape[1] :]
    assert new.shape == (2, 4)
    assert not torch.isin(new, torch.tensor(suppressed)).any()


# ---------------------------------------------------------------- determinism
@pytest.mark.parametrize("family", ["llava", "qwen2.5-vl"])
def test_same_seed_same_bytes_other_seed_other_weights(family, built, tmp_path):
    again = build_tiny_model(family, "test", tmp_path / "again", seed=0)
    other = build_tiny_model(family, "test", tmp_path / "other", seed=1)
    first = built[family]
    assert (again / "tokenizer.json").read_bytes() == (first / "tokenizer.json").read_bytes()
    weights, same, changed = (load_file(p / "model.safetensors") for p in (first, again, other))
    assert weights.keys() == same.keys() == changed.keys()
    assert all(torch.equal(weights[k], same[k]) for k in weights)
    assert any(not torch.equal(weights[k], changed[k]) for k in weights if weights[k].numel() > 1)


def test_building_leaves_the_global_rng_alone():
    state = torch.get_rng_state()
    build_model(tiny_config("llava", "test", build_tokenizer("llava", "test")), seed=3)
    assert torch.equal(state, torch.get_rng_state())


# ---------------------------------------------------------------- tokenizer
@pytest.fixture(scope="session")
def tokenizers(loaded):
    return {family: processor.tokenizer for family, (_, processor) in loaded.items()}


@settings(max_examples=50, deadline=None)
@given(text=st.text(max_size=80))
def test_byte_level_round_trip_on_any_text(tokenizers, text):
    for tokenizer in (tokenizers["llava"], tokenizers["qwen2-vl"]):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids or tokenizer.unk_token_id is None


@pytest.mark.parametrize(
    "text", ["héllo wörld 🎉🚀 世界", '{"thoughts": "tab\there\nnew line", "action": "+"}', "  x  "]
)
def test_round_trip_and_offsets_on_unicode(tokenizers, text):
    for tokenizer in tokenizers.values():
        encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        assert tokenizer.decode(encoded["input_ids"]) == text
        offsets = encoded["offset_mapping"]
        assert offsets[0][0] == 0 and offsets[-1][1] == len(text)
        assert all(a[1] <= b[0] + 1 for a, b in itertools.pairwise(offsets))  # bytes of one char share it


def test_offsets_tile_an_answer_without_gaps(tokenizers):
    task, env = get_task("points24"), make_env("points24")
    env.reset(seed=0)
    _, answer = task.expert(env)
    for tokenizer in tokenizers.values():
        offsets = tokenizer(answer, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
        assert offsets[0][0] == 0 and offsets[-1][1] == len(answer)
        assert all(a[1] == b[0] for a, b in itertools.pairwise(offsets))


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_special_tokens_have_the_ids_the_config_says(family, loaded):
    model, processor = loaded[family]
    spec, tokenizer, config = get_family(family), processor.tokenizer, model.config
    assert tokenizer.convert_tokens_to_ids(list(spec.special_tokens)) == list(range(len(spec.special_tokens)))
    text = config.get_text_config()
    assert text.vocab_size == len(tokenizer)
    assert text.eos_token_id == tokenizer.eos_token_id == tokenizer.convert_tokens_to_ids(spec.eos)
    assert text.pad_token_id == tokenizer.pad_token_id == tokenizer.convert_tokens_to_ids(spec.pad)
    assert image_token_id(config) == tokenizer.convert_tokens_to_ids(spec.image_token) == processor.image_token_id
    eos = model.generation_config.eos_token_id
    assert tokenizer.eos_token_id in (eos if isinstance(eos, list) else [eos])
    if spec.bos is None:
        assert tokenizer.bos_token is None
    else:
        assert text.bos_token_id == tokenizer.bos_token_id == tokenizer.convert_tokens_to_ids(spec.bos)
        assert tokenizer("hi")["input_ids"][0] == tokenizer.bos_token_id  # like Llama tokenizers
    decoded = tokenizer.decode(tokenizer(f"a{spec.image_token}b", add_special_tokens=False)["input_ids"])
    assert decoded == f"a{spec.image_token}b"


def test_expert_answers_encode_to_few_tokens(tokenizers, capsys):
    """Measured: 1.4 (NumberLine) to 1.65 (Points24) tokens per whitespace-separated word;
    the JSON punctuation and the digits of formulas make up the excess over one."""
    tokenizer = tokenizers["llava"]
    ratios = {}
    for name in TASKS:
        task, env = get_task(name), make_env(name)
        tokens = words = 0
        for seed in range(1000, 1020):
            env.reset(seed=seed)
            _, answer = task.expert(env)
            tokens += len(tokenizer(answer, add_special_tokens=False)["input_ids"])
            words += len(answer.split())
        ratios[name] = tokens / words
    with capsys.disabled():
        print("\ntokens per word of expert answers:", {k: round(v, 2) for k, v in ratios.items()})
    assert all(ratio < 1.8 for ratio in ratios.values()), ratios


# ---------------------------------------------------------------- sizes
@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_parameter_counts(family, loaded):
    tokenizer = loaded[family][1].tokenizer
    test = sum(p.numel() for p in loaded[family][0].parameters())
    demo = sum(p.numel() for p in build_model(tiny_config(family, "demo", tokenizer), seed=0).parameters())
    assert 200_000 < test < 2_000_000
    assert 4_000_000 < demo < 15_000_000


# ---------------------------------------------------------------- bad inputs
def test_unknown_family_size_or_model_type_is_one_clear_line(tmp_path):
    with pytest.raises(
        ValueError, match=re.escape("supported families: llava, llava-next, qwen2-vl, qwen2.5-vl")
    ) as error:
        build_tiny_model("gpt2", "test", tmp_path / "x")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=f"valid sizes: {', '.join(SIZES)}") as error:
        build_tiny_model("llava", "huge", tmp_path / "x")
    assert "\n" not in str(error.value)
    with pytest.raises(ValueError, match=r"unsupported model type 'bert'.*llava") as error:
        family_of(AutoConfig.for_model("bert"))
    assert "\n" not in str(error.value)
    assert not (tmp_path / "x").exists()


def test_refuses_to_overwrite_a_foreign_folder_but_replaces_a_tiny_build(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="not a previous tiny build"):
        build_tiny_model("llava", "test", foreign)
    assert (foreign / "notes.txt").read_text() == "keep me"

    target = tmp_path / "tiny"
    build_tiny_model("llava", "test", target, seed=0)
    build_tiny_model("llava", "test", target, seed=1)
    assert read_marker(target)["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mine", "tiny"]  # no staging folders left
    assert (target / MARKER).is_file()


def test_the_cached_demo_model_is_rebuilt_when_stale_and_reused_when_current(tmp_path, monkeypatch):
    """A cache from before vision pretraining or from an older tokenizer corpus is rebuilt once."""
    from vlmrl.tiny import build as tiny

    monkeypatch.setenv("VLMRL_CACHE", str(tmp_path))
    builds = []

    def fake_build(family, size, out, pretrain_vision=0, progress=None, seed=0):
        builds.append((family, size, pretrain_vision))
        out.mkdir(parents=True, exist_ok=True)
        marker = {"family": family, "size": size, "tokenizer_version": tiny.TOKENIZER_VERSION}
        marker["vision_pretraining"] = {"steps": pretrain_vision}
        (out / tiny.MARKER).write_text(json.dumps(marker))
        return out

    monkeypatch.setattr(tiny, "build_tiny_model", fake_build)
    folder = tiny.demo_model(progress=lambda step, metrics: None)
    assert builds == [("llava", "demo", tiny.DEMO_VISION_STEPS)]
    assert tiny.demo_model(progress=lambda step, metrics: None) == folder and len(builds) == 1
    stale = json.loads((folder / tiny.MARKER).read_text())
    del stale["tokenizer_version"]
    (folder / tiny.MARKER).write_text(json.dumps(stale))
    tiny.demo_model(progress=lambda step, metrics: None)
    assert len(builds) == 2
