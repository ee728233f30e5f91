"""How fast vlmrl trains a policy, at any model size: rollouts and PPO updates, with peak memory.

- Rollouts: env steps and generated tokens per second of N environments stepped in lockstep
  (one batched `generate` per step, as training collects), beside a loop that steps one
  environment at a time (the original RL4VLM's), on the same model in the same process, so
  their ratio is measured under the same conditions.
- Updates: PPO samples per second of `ppo_update` (re-scoring with gradients, backward, the
  optimizer's step) for a given mini-batch and accumulation, and the peak memory it reached
  (the process's resident memory, and CUDA's largest allocation when on a GPU).

Each measurement is preceded by an untimed warm-up of the same shape (first-call allocations,
kernel selection), and nothing here changes what training computes.
"""

from __future__ import annotations

import contextlib
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from vlmrl.games import Task
from vlmrl.policy.parts import part_of
from vlmrl.policy.policy import Policy
from vlmrl.recipes.rollout import Rollouts

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


# ---------------------------------------------------------------- memory
def reset_peak_memory() -> bool:
    """Start a new peak: CUDA's counters, and on Linux the process's high-water mark of resident
    memory (writing 5 to /proc/self/clear_refs). False where the CPU peak cannot be reset (it is then
    the process's lifetime peak, model loading included)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_memory() -> dict[str, int | None]:
    """The peak resident memory of this process since the last reset (bytes), and CUDA's largest
    allocation (bytes; None without a GPU)."""
    rss = None
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                rss = int(line.split()[1]) * 1024
    except OSError:
        pass
    if rss is None:  # not Linux: the lifetime peak (kilobytes on Linux, bytes on macOS)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        rss = peak if sys.platform == "darwin" else peak * 1024
    cuda = int(torch.cuda.max_memory_allocated()) if torch.cuda.is_available() else None
    return {"cpu_peak_rss_bytes": rss, "cuda_max_allocated_bytes": cuda}


BANDWIDTH = {"H200": 4.8e12}
"""Memory bandwidth (bytes/s) of accelerators known by name, for the decode roofline."""


def known_bandwidth(device: torch.device) -> float | None:
    """The memory bandwidth of `device` when its name is in BANDWIDTH (None on a CPU or another GPU)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((bandwidth for model, bandwidth in BANDWIDTH.items() if model in name), None)


# ---------------------------------------------------------------- rollouts
@dataclass(frozen=True)
class Sampling:
    """How answers are sampled during the measurement (as in a training run)."""

    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 96
    cot: bool = True
    invalid_action: str | None = "penalty"


def language_weight_bytes(policy: Policy) -> int:
    """Bytes of the weights one decode step reads: the language model's and the output head's (the
    vision tower and projector run once per prompt, in the prefill)."""
    return sum(
        p.numel() * p.element_size() for name, p in policy.model.named_parameters() if part_of(name) == "language"
    )


def kv_bytes_per_token(policy: Policy) -> int:
    """Bytes of keys and values the KV cache holds per token of context, over all layers."""
    text = policy.model.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or text.num_attention_heads
    return 2 * text.num_hidden_layers * kv_heads * head_dim * policy.dtype.itemsize


def timed_rollout(
    policy: Policy, task: Task, num_envs: int, steps: int, sampling: Sampling, seed: int, env_workers: int = 0
) -> dict:
    """`steps` lockstep steps of `num_envs` environments after one untimed step: env steps, generated
    tokens and seconds of the timed part (the environments' stepping included, as in training), and
    the memory traffic of decoding: a decode step reads the language model's weights once and each
    answer's KV cache (its prompt and the answer so far: half the answer on average; a static cache's
    attention reads its whole allocated length, so there the figure is a lower bound). `env_workers`:
    processes that step the environments (0: this one)."""
    rollouts = Rollouts(task, num_envs, seed, sampling.invalid_action, cot=sampling.cot, env_workers=env_workers)
    settings = (sampling.temperature, sampling.top_p, sampling.max_new_tokens)
    with contextlib.closing(rollouts):
        rollouts.collect(policy, 1, *settings)
        started = time.perf_counter()
        buffer, _ = rollouts.collect(policy, steps, *settings)
        seconds = time.perf_counter() - started
    answers = len(buffer.samples)
    prompt = sum(len(s.prompt_ids) for s in buffer.samples) / answers
    answer = buffer.generated_tokens / answers
    decode_steps_per_second = answer * steps / buffer.generation_seconds  # prefill included: a lower bound
    bytes_per_decode_step = language_weight_bytes(policy) + num_envs * (prompt + answer / 2) * kv_bytes_per_token(
        policy
    )
    return {
        "num_envs": num_envs,
        "env_steps": steps * num_envs,
        "seconds": seconds,
        "env_steps_per_second": steps * num_envs / seconds,
        "generated_tokens": buffer.generated_tokens,
        "tokens_per_second": buffer.generated_tokens / seconds,
        "generation_seconds": buffer.generation_seconds,
        "env_seconds": buffer.env_seconds,  # stepping and resetting the games
        "mean_prompt_tokens": prompt,
        "mean_answer_tokens": answer,
        "decode_steps_per_second": decode_steps_per_second,
        "bytes_per_decode_step": bytes_per_decode_step,
        "decode_bytes_per_second": bytes_per_decode_step * decode_steps_per_second,
    }


def rollout_throughput(
    policy: Policy,
    task: Task,
    num_envs: Sequence[int],
    steps: int,
    one_env_steps: int,
    sampling: Sampling,
    seed: int = 0,
    progress: Callable[[str], Any] | None = None,
    bandwidth: float | None = None,
    env_workers: int = 0,
) -> dict[str, Any]:
    """The one-environment loop (`one_env_steps` steps, in this process), then each N of `num_envs` in
    lockstep (`steps` steps each, the environments over `env_workers` processes); every row's `speedup`
    is its env steps/s over the loop's. With the memory's `bandwidth` (bytes/s), each row's
    `roofline_fraction`: the decode traffic it reached over that bound."""
    say = progress or (lambda _: None)
    say(f"one environment at a time: {one_env_steps} steps")
    one = timed_rollout(policy, task, 1, one_env_steps, sampling, seed)
    rows = []
    for n in num_envs:
        say(f"{n} environments in lockstep: {steps} steps")
        row = timed_rollout(policy, task, n, steps, sampling, seed, env_workers)
        row["speedup"] = row["env_steps_per_second"] / one["env_steps_per_second"]
        rows.append(row)
    if bandwidth:
        for row in [one, *rows]:
            row["roofline_fraction"] = row["decode_bytes_per_second"] / bandwidth
    return {
        "env": task.name,
        "memory_bandwidth": bandwidth,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "dtype": str(policy.dtype).removeprefix("torch."),
        "kv_cache": policy.kv_cache,
        "attention": policy.model.config._attn_implementation,  # sdpa where the family supports it
        "temperature": sampling.temperature,
        "max_new_tokens": sampling.max_new_tokens,
        "cot": sampling.cot,
        "env_workers": env_workers,
        "invalid_action": sampling.invalid_action,
        "one_env": one,
        "rows": rows,
        **peak_memory(),
    }


# ---------------------------------------------------------------- updates
def update_throughput(
    config: Any, policy: Policy | None = None, repeats: int = 1, progress: Callable[[str], Any] | None = None
) -> dict[str, Any]:
    """PPO updates of `config` (a `TrainConfig`; `policy`: one built elsewhere instead of its model) on
    one freshly collected buffer: an untimed first update, then `repeats` timed ones. Samples/s counts
    every re-scored sample (buffer size x ppo_epochs)."""
    from vlmrl.recipes.ppo import collect_and_estimate, optimizer_steps_per_update, ppo_update, setup

    say = progress or (lambda _: None)
    run = setup(config, policy=policy)
    with contextlib.closing(run.rollouts):
        say(f"collecting {config.steps_per_update} steps ({config.num_envs} environments in lockstep)")
        buffer, advantages, returns, _, _ = collect_and_estimate(run)
    samples = len(buffer.samples) * config.ppo_epochs
    say("warm-up update (not timed)")
    ppo_update(run, buffer, advantages, returns)
    exact_cpu_peak = reset_peak_memory()
    seconds = []
    for i in range(repeats):
        say(f"timed update {i + 1} of {repeats}")
        started = time.perf_counter()
        ppo_update(run, buffer, advantages, returns)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - started)
    mean = sum(seconds) / len(seconds)
    trainable = sum(p.numel() for p in run.policy.parameters() if p.requires_grad)
    return {
        "env": config.env,
        "samples_per_update": samples,
        "minibatch_size": config.minibatch_size,
        "grad_accum": config.grad_accum,
        "ppo_epochs": config.ppo_epochs,
        "optimizer_steps_per_update": optimizer_steps_per_update(config),
        "lora": config.lora,
        "gradient_checkpointing": config.gradient_checkpointing,
        "parameters": sum(p.numel() for p in run.policy.parameters()),
        "trainable_parameters": trainable,
        "dtype": str(run.policy.dtype).removeprefix("torch."),
        "device": str(run.policy.device),
        "mean_prompt_tokens": sum(len(s.prompt_ids) for s in buffer.samples) / len(buffer.samples),  # image's too
        "mean_response_tokens": sum(len(s.response_ids) for s in buffer.samples) / len(buffer.samples),
        "seconds_per_update": mean,
        "seconds": seconds,
        "samples_per_second": samples / mean,
        "cpu_peak_is_of_updates": exact_cpu_peak,
        **peak_memory(),
    }
