"""The VLM agent: batched sampling with log-probs and values, and re-scoring with gradients.

`generate` runs one batched call over all environments (left-padded prompts, KV cache,
image placeholder tokens suppressed) and reports, per sample, the response, its per-token
log-probs under the sampling distribution softmax(logits / temperature), and the critic's
value. `score` re-computes, with gradients, the PPO log-prob
``lambda * sum(log p of CoT tokens) + sum(log p of action tokens)``, the value and the
entropy, from each sample's OWN stored prompt ids and image. With unchanged weights (and
dropout off) it reproduces what `generate` reported.

Both read the final hidden state through a hook on the output head's input, so the value
costs no extra forward pass and no family-specific code.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.distributed.fsdp import FSDPModule
from transformers import GenerationConfig

from vlmrl.policy.split import action_start
from vlmrl.policy.value_head import ValueHead

SUPPRESSED = torch.finfo(torch.float32).min
"""Logit given to tokens the model may never emit: finite, so 0 * log 0 stays 0 in entropies."""


@dataclass
class Sample:
    """One sampled answer, with everything needed to re-score exactly what was sampled."""

    image: np.ndarray
    prompt_ids: torch.Tensor
    """The prompt as the model saw it (chat template applied, image tokens expanded), unpadded."""
    response_ids: torch.Tensor
    """The sampled tokens, through the first end-of-sequence token when there is one."""
    text: str
    logprobs: torch.Tensor
    """Per response token: log-prob under softmax(logits / temperature)."""
    value: float
    action_start: int
    """Index of the first action token in `response_ids` (0: no "action" key, all action)."""
    temperature: float
    prompt: str = ""
    """The task prompt as written (before the chat template): what logs show beside the answer."""

    def logprob(self, cot_lambda: float) -> float:
        """The PPO log-prob of the response: CoT tokens scaled by lambda, action tokens whole."""
        return float(cot_lambda * self.logprobs[: self.action_start].sum() + self.logprobs[self.action_start :].sum())


@dataclass
class Scores:
    logprob: torch.Tensor
    """(batch,) lambda-scaled log-prob of each response, with gradients."""
    value: torch.Tensor
    """(batch,) critic values, float32."""
    entropy: torch.Tensor
    """(batch,) mean per-token entropy of the sampling distribution over each response."""
    token_logprobs: torch.Tensor
    """(batch, longest response) per-token log-probs, zero past each response's end."""


@contextmanager
def final_hidden_states(model: nn.Module) -> Iterator[list[torch.Tensor]]:
    """The inputs of the output head (the final hidden states) of the block's first forward pass: in
    `generate`, the prefill's, whose last position the value head reads. Later passes (decode steps)
    are not kept: a list growing every step held their tensors and, on a GPU, made every step a new
    torch.compile guard (measured on an H200: recompiles until dynamo's limit)."""
    captured: list[torch.Tensor] = []

    def first_only(_module, args) -> None:
        if not captured:
            captured.append(args[0])

    head = model.get_output_embeddings()
    handle = head.register_forward_pre_hook(first_only)
    try:
        yield captured
    finally:
        handle.remove()


class Policy(nn.Module):
    """A vision-language model, its processor, and a value head, for any supported family."""

    def __init__(
        self,
        model: nn.Module,
        processor,
        family: str,
        suppressed_ids: Sequence[int],
        value_head: ValueHead | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.processor = processor
        self.family = family
        self.tokenizer = processor.tokenizer
        self.tokenizer.padding_side = "left"
        hidden = model.config.get_text_config().hidden_size
        self.value_head = value_head if value_head is not None else ValueHead(hidden)
        self.value_head.to(self.device)
        self.suppressed_ids = sorted(set(suppressed_ids))
        self.eos_ids = self._eos_ids()
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.eos_ids[0]
        self.uses_mrope = "mm_token_type_ids" in getattr(processor, "model_input_names", [])
        self.sharded = False
        """Set by `vlmrl.policy.sharding.shard_policy`: every forward pass is then a collective, so
        generate keeps the ranks in step and a rank with nothing to score still runs its passes."""
        self.kv_cache = "dynamic"
        """`generate`'s KV cache: dynamic (grown token by token) or static (allocated once per call at
        prompt + max_new_tokens, written in place; transformers' cache_implementation)."""
        self.reshard_after_forward = True
        """A sharded policy's units free their gathered weights after each forward pass (FSDP2's default)."""

    # ---------------------------------------------------------------- basics
    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def _eos_ids(self) -> list[int]:
        eos = getattr(self.model.generation_config, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        ids = [eos] if isinstance(eos, int) else list(eos or [])
        if not ids:
            raise ValueError("the model folder defines no end-of-sequence token (eos_token_id)")
        return ids

    def chat(self, prompt: str) -> str:
        """A prompt in the family's chat format: one user turn of an image and the text."""
        messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
        return self.processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)

    def encode(self, images: Sequence[np.ndarray | Image.Image], prompts: Sequence[str]):
        """Tokenised, left-padded prompts with their image inputs, on the model's device."""
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts")
        inputs = self.processor(
            images=[as_pil(image) for image in images],
            text=[self.chat(prompt) for prompt in prompts],
            padding=True,
            padding_side="left",
            return_tensors="pt",
        )
        return self._to_device(inputs)

    def _to_device(self, inputs):
        inputs = inputs.to(self.device)
        if "pixel_values" in inputs and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        return inputs

    def masked_logits(self, logits: torch.Tensor, temperature: torch.Tensor | float) -> torch.Tensor:
        """Logits of the sampling distribution: divided by temperature, then forbidden tokens removed
        (in this order: SUPPRESSED divided by a temperature below 1 would overflow to -inf)."""
        logits = logits.float() / temperature
        if self.suppressed_ids:
            logits = logits.index_fill(-1, torch.tensor(self.suppressed_ids, device=logits.device), SUPPRESSED)
        return logits

    # ---------------------------------------------------------------- sampling
    @torch.no_grad()
    def generate(
        self,
        images: Sequence[np.ndarray | Image.Image],
        prompts: Sequence[str],
        temperature: float = 0.2,
        top_p: float = 1.0,
        max_new_tokens: int = 256,
    ) -> list[Sample]:
        """One batched sampling call over all prompts. Temperature 0 means greedy decoding
        (log-probs then reported under temperature 1). Sharded, no prompts still generates (for
        a placeholder, thrown away) as long as the other ranks do."""
        if not prompts and self.sharded:
            self.generate(*placeholder(), temperature, top_p, max_new_tokens)
            return []
        inputs = self.encode(images, prompts)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=temperature > 0,
            temperature=temperature if temperature > 0 else None,
            top_p=top_p if temperature > 0 else None,
            top_k=0 if temperature > 0 else None,
            suppress_tokens=self.suppressed_ids or None,
            eos_token_id=self.eos_ids,
            pad_token_id=self.pad_id,
            output_logits=True,
            return_dict_in_generate=True,
            cache_implementation=None if self.kv_cache == "dynamic" else self.kv_cache,
            # no implicit torch.compile of the decode step (transformers' default with a static cache on a
            # GPU): it recompiles for every new batch size and prompt length, which rollouts change often
            disable_compile=True,
        )
        sync = {"synced_gpus": True} if self.sharded else {}  # ranks that finish early keep stepping
        with final_hidden_states(self.model) as hidden, self._gathered_while_generating():
            out = self.model.generate(**inputs, generation_config=config, **sync)
        values = self.value_head(hidden[0][:, -1])
        prompt_length = inputs["input_ids"].shape[1]
        new_tokens = out.sequences[:, prompt_length:]
        scale = temperature if temperature > 0 else 1.0
        # step by step: no (batch, steps, vocab) copies (5 GB each at Qwen's vocabulary, 32 answers of 256 tokens)
        token_logprobs = torch.stack(
            [
                torch.log_softmax(self.masked_logits(logits, scale), dim=-1).gather(-1, tokens[:, None]).squeeze(-1)
                for logits, tokens in zip(out.logits, new_tokens.unbind(1), strict=True)
            ],
            dim=1,
        )
        samples = []
        for i in range(len(prompts)):
            length = self._response_length(new_tokens[i])
            response = new_tokens[i, :length].cpu()
            prompt = inputs["input_ids"][i][inputs["attention_mask"][i].bool()].cpu()
            samples.append(
                Sample(
                    image=np.asarray(images[i]),
                    prompt_ids=prompt,
                    response_ids=response,
                    text=self.tokenizer.decode(response, skip_special_tokens=True),
                    logprobs=token_logprobs[i, :length].float().cpu(),
                    value=float(values[i]),
                    action_start=action_start(self.tokenizer, response.tolist()),
                    temperature=scale,
                    prompt=prompts[i],
                )
            )
        return samples

    @torch.no_grad()
    def values(self, images: Sequence[np.ndarray | Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """Critic values of observations (e.g. the last one of a truncated episode), one forward pass
        (sharded, also for no observations: then of a placeholder, thrown away)."""
        if not prompts and self.sharded:
            self.values(*placeholder())
            return torch.zeros(0)
        inputs = self.encode(images, prompts)
        if not self.uses_mrope:
            inputs["position_ids"] = positions(inputs["attention_mask"])
        with final_hidden_states(self.model) as hidden:
            self.model(**inputs, logits_to_keep=1, use_cache=False)
        values = self.value_head(hidden[-1][:, -1])
        self.release_gathered()
        return values

    @contextmanager
    def _gathered_while_generating(self) -> Iterator[None]:
        """Sharded: each unit gathers its weights once for the whole generate call and keeps them
        until its end, instead of once per generated token (FSDP2's set_reshard_after_forward, as
        its documentation suggests for evaluation); then every unit frees them again."""
        if not self.sharded:
            yield
            return
        roots = fsdp_roots(self)
        for root in roots:
            root.set_reshard_after_forward(False)
        try:
            yield
        finally:
            for root in roots:
                root.set_reshard_after_forward(self.reshard_after_forward)
                root.set_reshard_after_forward(False, recurse=False)  # FSDP2's own choice for a root
            self.release_gathered()

    def release_gathered(self) -> None:
        """After passes with no backward: sharded units that keep their gathered weights until
        backward (ZeRO-2's layout) free them now, as backward would have."""
        if self.sharded and not torch.is_grad_enabled():
            for module in self.modules():
                if isinstance(module, FSDPModule):
                    module.reshard()

    def _response_length(self, tokens: torch.Tensor) -> int:
        """Tokens up to and including the first end-of-sequence token (all when there is none)."""
        is_eos = torch.isin(tokens, torch.tensor(self.eos_ids, device=tokens.device))
        return int(is_eos.int().argmax()) + 1 if bool(is_eos.any()) else len(tokens)

    # ---------------------------------------------------------------- re-scoring
    def score(self, samples: Sequence[Sample], cot_lambda: float = 1.0, value_trains_model: bool = True) -> Scores:
        """Re-compute log-probs, values and entropies of stored samples, with gradients.

        With `value_trains_model` false the critic reads detached hidden states: the value loss then
        trains the value head alone and cannot move the policy's weights."""
        inputs, response_ids, response_mask = self._rescoring_batch(samples)
        longest = response_ids.shape[1]
        with final_hidden_states(self.model) as hidden:
            out = self.model(**inputs, logits_to_keep=longest + 1, use_cache=False)
        state = hidden[-1][:, 0]  # the kept positions start at the last prompt token
        values = self.value_head(state if value_trains_model else state.detach())
        temperature = torch.tensor([s.temperature for s in samples], device=self.device).view(-1, 1, 1)
        logprobs = torch.log_softmax(self.masked_logits(out.logits[:, :-1], temperature), dim=-1)
        token_logprobs = logprobs.gather(-1, response_ids.unsqueeze(-1)).squeeze(-1) * response_mask
        entropy = -(logprobs.exp() * logprobs).sum(-1)
        positions = torch.arange(longest, device=self.device)
        starts = torch.tensor([s.action_start for s in samples], device=self.device).unsqueeze(1)
        weights = torch.where(positions >= starts, 1.0, cot_lambda) * response_mask
        lengths = response_mask.sum(1).clamp(min=1)
        self.release_gathered()
        return Scores(
            logprob=(token_logprobs * weights).sum(1),
            value=values,
            entropy=(entropy * response_mask).sum(1) / lengths,
            token_logprobs=token_logprobs,
        )

    def _rescoring_batch(self, samples: Sequence[Sample]):
        """Prompts left-padded and responses right-padded, as during sampling, with image inputs."""
        prompt_length = max(len(s.prompt_ids) for s in samples)
        longest = max(max(len(s.response_ids) for s in samples), 1)
        batch = len(samples)
        input_ids = torch.full((batch, prompt_length + longest), self.pad_id, dtype=torch.long)
        attention = torch.zeros_like(input_ids)
        for i, s in enumerate(samples):
            p, r = len(s.prompt_ids), len(s.response_ids)
            input_ids[i, prompt_length - p : prompt_length] = s.prompt_ids
            input_ids[i, prompt_length : prompt_length + r] = s.response_ids
            attention[i, prompt_length - p : prompt_length + r] = 1
        inputs = dict(self.processor.image_processor(images=[as_pil(s.image) for s in samples], return_tensors="pt"))
        inputs.update(input_ids=input_ids, attention_mask=attention)
        if self.uses_mrope:
            inputs["mm_token_type_ids"] = torch.tensor(self.processor.create_mm_token_type_ids(input_ids))
        else:
            inputs["position_ids"] = positions(attention)
        inputs = {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
        if inputs.get("pixel_values") is not None and inputs["pixel_values"].is_floating_point():
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        response_ids = input_ids[:, prompt_length:].to(self.device)
        response_mask = attention[:, prompt_length:].to(self.device).float()
        return inputs, response_ids, response_mask


def fsdp_roots(module: nn.Module) -> list[FSDPModule]:
    """The outermost FSDP units under `module` (the model, the value head)."""
    if isinstance(module, FSDPModule):
        return [module]
    return [root for child in module.children() for root in fsdp_roots(child)]


def placeholder() -> tuple[list[np.ndarray], list[str]]:
    """An observation for a rank with none, whose forward passes the other ranks' need."""
    return [np.zeros((32, 32, 3), dtype=np.uint8)], ["-"]


def positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids under left padding, as `generate` computes them: real tokens count from 0."""
    return (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)


def as_pil(image: np.ndarray | Image.Image) -> Image.Image:
    return image if isinstance(image, Image.Image) else Image.fromarray(np.asarray(image, dtype=np.uint8))
