"""The policy contract, for every family: what generate reports, score reproduces."""

from __future__ import annotations

import json
from contextlib import contextmanager

import pytest
import torch

from vlmrl.infra.errors import UsageError
from vlmrl.policy.families import FAMILIES
from vlmrl.policy.loading import LoraSettings, load_policy
from vlmrl.policy.policy import Sample
from vlmrl.policy.saving import export_merged, load_trainable, save_trainable
from vlmrl.policy.split import action_start

LORA = LoraSettings(rank=4, alpha=8, dropout=0.0)


def sampled(policy, game_inputs, temperature=1.0, max_new_tokens=24, seed=0):
    torch.manual_seed(seed)
    images, prompts = game_inputs
    return policy.generate(images, prompts, temperature=temperature, max_new_tokens=max_new_tokens)


@pytest.mark.parametrize("temperature", [1.0, 0.2])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_score_reproduces_generate_logprobs_and_values(family, temperature, tiny_model_dir, game_inputs):
    """Also below temperature 1, where a suppressed token's logit divided by the temperature
    once overflowed to -inf and made every entropy (and so the PPO loss) NaN."""
    policy = load_policy(tiny_model_dir(family)).eval()
    samples = sampled(policy, game_inputs, temperature=temperature)
    assert len({len(s.prompt_ids) for s in samples}) > 1, "prompts of different lengths exercise the padding"
    with torch.no_grad():
        scores = policy.score(samples, cot_lambda=0.5)
    for i, sample in enumerate(samples):
        n = len(sample.response_ids)
        assert torch.allclose(scores.token_logprobs[i, :n], sample.logprobs, atol=1e-4)
        assert scores.logprob[i].item() == pytest.approx(sample.logprob(0.5), abs=1e-4)
        assert scores.value[i].item() == pytest.approx(sample.value, abs=1e-4)
    assert torch.isfinite(scores.entropy).all() and (scores.entropy > 0).all()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_static_kv_cache_samples_what_the_dynamic_one_does(family, tiny_model_dir, game_inputs):
    """The same random draws give the same answers, log-probs and values: the cache's layout changes, not the model."""
    policy = load_policy(tiny_model_dir(family)).eval()
    dynamic = sampled(policy, game_inputs)
    policy.kv_cache = "static"
    static = sampled(policy, game_inputs)
    for a, b in zip(dynamic, static, strict=True):
        assert torch.equal(a.response_ids, b.response_ids)
        assert torch.allclose(a.logprobs, b.logprobs, atol=1e-5) and a.value == pytest.approx(b.value, abs=1e-5)


def test_generate_keeps_only_the_prefills_hidden_states_and_never_compiles(tiny_model_dir, game_inputs, monkeypatch):
    """The value head reads the prefill's last position (that it is the prefill's, the test above
    shows: values equal re-scoring's); the decode steps' hidden states are not kept (a list growing
    every step made each step a new torch.compile guard on a GPU), and transformers' implicit compile
    of the decode step (its default with a static cache on a GPU) is off."""
    from vlmrl.policy import policy as policy_module

    policy = load_policy(tiny_model_dir("llava")).eval()
    policy.kv_cache = "static"
    seen = {}
    collect = policy_module.final_hidden_states
    generate = policy.model.generate

    @contextmanager
    def recording(model):
        with collect(model) as hidden:
            seen["hidden"] = hidden
            yield hidden

    def spying_generate(*args, generation_config, **kwargs):
        seen["disable_compile"] = generation_config.disable_compile
        return generate(*args, generation_config=generation_config, **kwargs)

    monkeypatch.setattr(policy_module, "final_hidden_states", recording)
    monkeypatch.setattr(policy.model, "generate", spying_generate)
    samples = sampled(policy, game_inputs, max_new_tokens=12)
    assert max(len(s.response_ids) for s in samples) > 1, "decode steps ran"
    assert len(seen["hidden"]) == 1
    assert seen["disable_compile"] is True


@pytest.mark.parametrize("family", list(FAMILIES))
def test_image_placeholder_tokens_are_never_generated(family, tiny_model_dir, game_inputs):
    policy = load_policy(tiny_model_dir(family)).eval()
    head = policy.model.get_output_embeddings()
    with torch.no_grad():  # make the placeholders the model's favourite tokens
        for token in policy.suppressed_ids:
            head.weight[token] = head.weight.abs().max() * 50 * torch.sign(head.weight[0] + 1e-3)
    samples = sampled(policy, game_inputs, max_new_tokens=16)
    for sample in samples:
        assert not set(sample.response_ids.tolist()) & set(policy.suppressed_ids)
    policy.score(samples)  # re-scoring runs: no "image features and image tokens do not match"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_lambda_scales_only_the_tokens_before_the_action_key(family, tiny_model_dir, game_inputs):
    policy = load_policy(tiny_model_dir(family)).eval()
    template = sampled(policy, game_inputs, max_new_tokens=4)[0]
    text = '{"thoughts": "the target is bigger, so go up", "action": "+"}'
    ids = torch.tensor(policy.tokenizer.encode(text, add_special_tokens=False))
    start = action_start(policy.tokenizer, ids.tolist())
    assert '"action"' not in policy.tokenizer.decode(ids[:start])
    assert policy.tokenizer.decode(ids[start:]).lstrip().startswith('"action"')
    crafted = Sample(template.image, template.prompt_ids, ids, text, torch.zeros(len(ids)), 0.0, start, 1.0)
    with torch.no_grad():
        whole, none = policy.score([crafted], 1.0), policy.score([crafted], 0.0)
    token_logprobs = whole.token_logprobs[0]
    assert none.logprob.item() == pytest.approx(token_logprobs[start:].sum().item(), abs=1e-5)
    assert whole.logprob.item() - none.logprob.item() == pytest.approx(token_logprobs[:start].sum().item(), abs=1e-4)


def test_a_response_without_action_key_counts_wholly_as_action(tiny_model_dir):
    policy = load_policy(tiny_model_dir("llava"))
    ids = policy.tokenizer.encode("I think I will hit.", add_special_tokens=False)
    assert action_start(policy.tokenizer, ids) == 0


@pytest.mark.parametrize("family", list(FAMILIES))
def test_with_lora_only_adapters_and_value_head_get_gradients(family, tiny_model_dir, game_inputs):
    policy = load_policy(tiny_model_dir(family), lora=LORA, trainable="all")
    scores = policy.score(sampled(policy.eval(), game_inputs, max_new_tokens=8))
    (scores.logprob.sum() + scores.value.sum()).backward()
    for name, parameter in policy.model.named_parameters():
        if "lora_" in name:
            assert parameter.requires_grad, name
        else:
            assert not parameter.requires_grad and parameter.grad is None, name
    lora_b = [p for n, p in policy.model.named_parameters() if "lora_A" in n]
    assert lora_b and all(p.grad is not None for p in lora_b)
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.value_head.parameters())


@pytest.mark.parametrize("family", list(FAMILIES))
def test_full_finetuning_gives_every_parameter_a_gradient(family, tiny_model_dir, game_inputs):
    policy = load_policy(tiny_model_dir(family), trainable="all")
    scores = policy.score(sampled(policy.eval(), game_inputs, max_new_tokens=8))
    (scores.logprob.sum() + scores.value.sum()).backward()
    missing = [n for n, p in policy.model.named_parameters() if p.requires_grad and p.grad is None]
    assert all(p.requires_grad for p in policy.model.parameters())
    # CLIP's final layer norm is not on LLaVA's path: features are read from a hidden layer.
    assert all("vision_tower.post_layernorm" in n for n in missing), missing[:5]


def test_a_critic_on_detached_states_trains_the_value_head_alone(tiny_model_dir, game_inputs):
    """value_trains_model=False: the value loss reaches the value head and no weight of the model."""
    policy = load_policy(tiny_model_dir("llava"), trainable="all")
    samples = sampled(policy.eval(), game_inputs, max_new_tokens=8)
    for trains_model in (True, False):
        policy.zero_grad(set_to_none=True)
        policy.score(samples, value_trains_model=trains_model).value.sum().backward()
        model_grads = [p.grad for p in policy.model.parameters() if p.grad is not None and p.grad.abs().sum() > 0]
        assert all(p.grad is not None for p in policy.value_head.parameters())
        assert bool(model_grads) == trains_model


def test_trainable_parts_freeze_the_rest(tiny_model_dir):
    language_only = load_policy(tiny_model_dir("llava"), trainable="language")
    frozen = [n for n, p in language_only.model.named_parameters() if not p.requires_grad]
    assert frozen and all("vision_tower" in n or "multi_modal_projector" in n for n in frozen)
    targets = {
        n
        for n, _ in load_policy(
            tiny_model_dir("qwen2-vl"), lora=LORA, trainable="language+projector"
        ).model.named_modules()
        if n.endswith("lora_A")
    }
    assert any("merger" in n for n in targets) and not any("blocks" in n for n in targets)


def perturb_trainable(policy, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in list(policy.model.parameters()) + list(policy.value_head.parameters()):
            if parameter.requires_grad:
                parameter.add_(torch.randn(parameter.shape, generator=generator) * 0.05)


@pytest.mark.parametrize("family", list(FAMILIES))
@pytest.mark.parametrize("lora", [LORA, None], ids=["lora", "full"])
def test_save_and_load_give_identical_scores(family, lora, tiny_model_dir, game_inputs, tmp_path):
    policy = load_policy(tiny_model_dir(family), lora=lora).eval()
    perturb_trainable(policy)
    samples = sampled(policy, game_inputs, max_new_tokens=12)
    save_trainable(policy, tmp_path / "ckpt")
    fresh = load_policy(tiny_model_dir(family), lora=lora).eval()
    load_trainable(fresh, tmp_path / "ckpt")
    with torch.no_grad():
        before, after = policy.score(samples, 0.5), fresh.score(samples, 0.5)
    assert torch.equal(before.logprob, after.logprob) and torch.equal(before.value, after.value)


def test_merged_export_matches_the_lora_policy(tiny_model_dir, game_inputs, tmp_path):
    policy = load_policy(tiny_model_dir("llava"), lora=LORA).eval()
    perturb_trainable(policy)
    samples = sampled(policy, game_inputs, max_new_tokens=12)
    with torch.no_grad():
        before = policy.score(samples, 0.5)
    export_merged(policy, tmp_path / "merged")
    merged = load_policy(tmp_path / "merged").eval()
    merged.value_head.load_state_dict(policy.value_head.state_dict())
    with torch.no_grad():
        after = merged.score(samples, 0.5)
    assert torch.allclose(before.logprob, after.logprob, atol=1e-4)


def test_gradient_checkpointing_really_recomputes_layers(tiny_model_dir, game_inputs):
    def forward_calls(checkpointing: bool) -> int:
        policy = load_policy(tiny_model_dir("llava"), gradient_checkpointing=checkpointing)
        samples = sampled(policy.eval(), game_inputs, max_new_tokens=6)
        policy.train()
        # A pre-hook inside the checkpointed layer: the recomputation stops early, after the
        # last activation it needs, so a hook at the end of the layer would not see it.
        mlp = policy.model.model.language_model.layers[0].mlp
        calls = []
        handle = mlp.register_forward_pre_hook(lambda *_: calls.append(1))
        policy.score(samples).logprob.sum().backward()
        handle.remove()
        return len(calls)

    assert forward_calls(False) == 1
    assert forward_calls(True) == 2


def test_bad_model_folders_are_one_clear_error(tmp_path, tiny_model_dir):
    with pytest.raises(UsageError, match="does not exist"):
        load_policy(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match=r"no config\.json"):
        load_policy(tmp_path / "empty")
    folder = tmp_path / "noweights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(UsageError, match="no weights"):
        load_policy(folder)
    source = tiny_model_dir("llava")
    text_only = tmp_path / "bert"
    text_only.mkdir()
    for file in source.iterdir():
        (text_only / file.name).write_bytes(file.read_bytes())
    (text_only / "config.json").write_text(json.dumps({"model_type": "bert", "hidden_size": 8}))
    with pytest.raises(UsageError, match="supported") as error:
        load_policy(text_only)
    assert len(str(error.value).splitlines()) == 1
    with pytest.raises(UsageError, match="trainable must be one of"):
        load_policy(source, trainable="everything")


@pytest.mark.parametrize("family", ["llava-next", "qwen2-vl"])
def test_a_folder_without_chat_template_gets_the_familys(family, tiny_model_dir, tmp_path):
    source = tiny_model_dir(family)
    bare = tmp_path / "bare"
    bare.mkdir()
    for file in source.iterdir():
        if file.name != "chat_template.jinja":
            (bare / file.name).write_bytes(file.read_bytes())
    with_template, without = load_policy(source), load_policy(bare)
    assert without.chat("Which card?") == with_template.chat("Which card?")
    assert "Which card?" in without.chat("Which card?")


@pytest.mark.parametrize("family", list(FAMILIES))
def test_values_of_observations_equal_the_values_generate_reports(family, tiny_model_dir, game_inputs):
    policy = load_policy(tiny_model_dir(family)).eval()
    with torch.no_grad():
        for module in policy.value_head.mlp:  # a critic with visible output, not the near-zero start
            if isinstance(module, torch.nn.Linear):
                torch.nn.init.normal_(module.weight, std=0.5)
    samples = sampled(policy, game_inputs, max_new_tokens=2)
    values = policy.values(*game_inputs)
    assert torch.allclose(values, torch.tensor([s.value for s in samples]), atol=1e-4)
    assert values.abs().max() > 1e-3
