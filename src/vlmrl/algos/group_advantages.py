"""Critic-free advantages from groups of episodes dealt from the same seed (GRPO; GiGPO's step groups).

An update's whole episodes come as flat, per-step tensors in any order of episodes, each
episode's steps in time order:
- `episode[k]`: which episode step k belongs to;
- `group[k]`: which deal that episode started from (the episodes of a group are compared);
- `state[k]` (GiGPO): a key of the state step k saw (a hash of its image and prompt), so that
  steps of a group's episodes that saw the same state are compared too.

GRPO (Shao et al. 2024) gives every step of an episode the episode's return minus its group's
mean, over the group's standard deviation. GiGPO (Feng et al. 2025) adds, with a weight, the
same comparison between steps that saw the same state, by their discounted returns from that
step. A group (or a state) seen once has nothing to be compared with: its advantage is 0.
"""

from __future__ import annotations

import torch
from torch import Tensor


def relative_to_peers(values: Tensor, keys: Tensor, scale: bool = True, eps: float = 1e-6) -> Tensor:
    """Each value minus the mean of the values that share its key, over their standard deviation
    (Bessel-corrected, as GRPO's implementations take it) when `scale`. A key held by one value
    gives 0. `keys` is (n,) or (n, k): rows that are equal share a key."""
    if values.shape[0] != keys.shape[0]:
        raise ValueError(f"{values.shape[0]} values for {keys.shape[0]} keys")
    values = values.float()
    if values.numel() == 0:
        return values.clone()
    _, inverse, counts = torch.unique(keys, dim=0, return_inverse=True, return_counts=True)
    means = torch.zeros(len(counts)).index_add_(0, inverse, values) / counts
    centered = values - means[inverse]
    if not scale:
        return centered
    spread = torch.zeros(len(counts)).index_add_(0, inverse, centered.pow(2))
    std = (spread / (counts - 1).clamp(min=1)).sqrt()
    return centered / (std[inverse] + eps)


def episode_returns(rewards: Tensor, episode: Tensor) -> tuple[Tensor, Tensor]:
    """Each episode's return (undiscounted sum of its rewards), and for each step the index of its
    episode in that list (episodes in the order of their ids)."""
    ids, inverse = torch.unique(episode, return_inverse=True)
    return torch.zeros(len(ids)).index_add_(0, inverse, rewards.float()), inverse


def returns_to_go(rewards: Tensor, episode: Tensor, gamma: float) -> Tensor:
    """The discounted return from each step to the end of its episode (its steps in time order)."""
    rewards = rewards.float()
    out = torch.zeros_like(rewards)
    following: dict[int, float] = {}
    for k in reversed(range(len(rewards))):
        e = int(episode[k])
        following[e] = float(rewards[k]) + gamma * following.get(e, 0.0)
        out[k] = following[e]
    return out


def grpo(rewards: Tensor, episode: Tensor, group: Tensor, scale: bool = True) -> Tensor:
    """Per step: its episode's return relative to the episodes of its group (`scale`: over their std)."""
    _check(rewards, episode=episode, group=group)
    totals, inverse = episode_returns(rewards, episode)
    group_of = torch.zeros(len(totals), dtype=group.dtype).scatter_(0, inverse, group)
    if not torch.equal(group_of[inverse], group):
        raise ValueError("an episode's steps are in more than one group; an episode starts from one deal")
    return relative_to_peers(totals, group_of, scale)[inverse]


def tied_groups(rewards: Tensor, episode: Tensor, group: Tensor) -> tuple[int, int]:
    """How many groups hold two or more episodes, and in how many of them every episode returned the
    same: GRPO gives all their steps an advantage of 0, so they teach nothing. Watching this share
    shows when the sampling temperature leaves too little spread within a group."""
    _check(rewards, episode=episode, group=group)
    totals, inverse = episode_returns(rewards, episode)
    group_of = torch.zeros(len(totals), dtype=torch.long).scatter_(0, inverse, group.long())
    _, which, counts = torch.unique(group_of, return_inverse=True, return_counts=True)
    highest = torch.full((len(counts),), -torch.inf).scatter_reduce(0, which, totals, "amax")
    lowest = torch.full((len(counts),), torch.inf).scatter_reduce(0, which, totals, "amin")
    compared = counts >= 2
    return int(compared.sum()), int((compared & (highest - lowest <= 1e-6)).sum())


def gigpo(
    rewards: Tensor,
    episode: Tensor,
    group: Tensor,
    state: Tensor,
    gamma: float,
    step_weight: float = 1.0,
    scale: bool = True,
) -> Tensor:
    """Per step: GRPO's episode term, plus `step_weight` times its discounted return-to-go relative
    to the steps of the same group that saw the same state."""
    _check(rewards, episode=episode, group=group, state=state)
    episode_term = grpo(rewards, episode, group, scale)
    peers = torch.stack([group.long(), state.long()], dim=1)
    return episode_term + step_weight * relative_to_peers(returns_to_go(rewards, episode, gamma), peers, scale)


def _check(rewards: Tensor, **per_step: Tensor) -> None:
    for name, tensor in per_step.items():
        if tensor.shape != rewards.shape or tensor.dim() != 1:
            raise ValueError(
                f"{name} has shape {tuple(tensor.shape)}; one entry per step, as rewards {tuple(rewards.shape)}"
            )
