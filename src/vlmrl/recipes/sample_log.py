"""What the agent writes, made visible: a few sampled steps per logged update, and how varied its thoughts are.

Thought collapse, the same chain of thought whatever the state, is the failure RL4VLM's CoT
scaling guards against; a run shows it by `charts/cot_diversity` (distinct thoughts over samples
in the update) falling, and by the sampled steps in `samples.jsonl` and TensorBoard.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from vlmrl.policy.policy import Sample

_ACTION_KEY = '"action"'


def thought(text: str) -> str:
    """The chain of thought of an answer: the text before its last "action" key, whitespace collapsed
    (an answer without one is all thought)."""
    cut = text.rfind(_ACTION_KEY)
    return re.sub(r"\s+", " ", text if cut < 0 else text[:cut]).strip()


def thoughts(samples: Sequence[Sample]) -> list[str]:
    return [thought(sample.text) for sample in samples]


def cot_diversity(every_thought: Sequence[str]) -> float:
    """Distinct thoughts over samples: 1 when every answer reasons differently, 1/n when all say the same."""
    return len(set(every_thought)) / len(every_thought) if every_thought else 0.0


def picked_samples(buffer: Any, advantages: torch.Tensor, count: int) -> list[dict[str, Any]]:
    """`count` steps spread evenly over the update's buffer (no randomness, so a resumed run picks the
    same): each with its image, prompt, answer, the action it was read as, reward and advantage."""
    samples = buffer.samples
    if not samples or count <= 0:
        return []
    rewards, advantages = buffer.rewards.flatten(), advantages.flatten()
    picked = sorted(set(np.linspace(0, len(samples) - 1, min(count, len(samples))).round().astype(int).tolist()))
    return [
        {
            "index": i,
            "image": samples[i].image,
            "prompt": samples[i].prompt,
            "answer": samples[i].text,
            "action": buffer.actions[i] if i < len(buffer.actions) else None,
            "reward": float(rewards[i]),
            "advantage": float(advantages[i]),
        }
        for i in picked
    ]
