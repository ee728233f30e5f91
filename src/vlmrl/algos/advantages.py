"""Advantage estimation over a time-major rollout: T lockstep steps of N environments.

Storage convention (see `vlmrl.recipes.rollout.RolloutBuffer`): entry `[t, i]` is environment i at step t.
`values[t, i]` is V(s_t), `rewards[t, i]` the reward of the step taken at s_t, and
`terminated[t, i]` / `truncated[t, i]` say whether *that* step ended the episode.
`next_values[t, i]` is V(s_{t+1}) for the state the step led to: `values[t + 1, i]` inside an
episode, the value of the observation after the last step for t = T - 1, and for a truncated
step the value of the final (truncated) observation, since the environment was reset and
`values[t + 1, i]` already belongs to the next episode. For a terminated step it is ignored.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    truncated: Tensor,
    gamma: float,
    lam: float,
) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016); returns `(advantages, returns)`, shape (T, N).

    A terminated step has no future, so its TD error does not bootstrap. A truncated step was
    cut short by a time limit: its TD error still bootstraps from the value of its last
    observation, but neither kind of ending lets an advantage flow back across the boundary
    into the previous episode. `returns = advantages + values` are the value-function targets.
    """
    shape = values.shape
    others = {"rewards": rewards, "next_values": next_values, "terminated": terminated, "truncated": truncated}
    for name, x in others.items():
        if x.shape != shape:
            raise ValueError(f"{name} has shape {tuple(x.shape)}, values has {tuple(shape)}")
    rewards, values = rewards.float(), values.float()
    terminated, truncated = terminated.bool(), truncated.bool()
    # `where`, not a multiplication, so that whatever sits in next_values at a terminated step
    # (even nan) cannot leak in.
    bootstrap = torch.where(terminated, torch.zeros_like(values), next_values.float())
    not_done = (~(terminated | truncated)).float()

    advantages = torch.zeros_like(values)
    lastgaelam = values.new_zeros(values.shape[1:])
    for t in reversed(range(len(values))):
        delta = rewards[t] + gamma * bootstrap[t] - values[t]
        lastgaelam = delta + gamma * lam * not_done[t] * lastgaelam
        advantages[t] = lastgaelam
    returns = advantages + values
    return advantages, returns


def normalize(x: Tensor, eps: float = 1e-8, sum_over_ranks: Callable[[Tensor], Tensor] | None = None) -> Tensor:
    """Zero mean, unit standard deviation over all elements (per-batch advantage normalisation).

    Uses the population standard deviation (no Bessel correction), so the result is defined for
    any size: a single element, or all elements equal, gives zeros rather than nan. An empty
    tensor comes back empty. Returns float32. With `sum_over_ranks` (data-parallel training: each
    process holds its part of the batch), the mean and deviation are those of all parts together.
    """
    x = x.float()
    if sum_over_ranks is not None:
        count_and_sum = sum_over_ranks(torch.stack([torch.tensor(float(x.numel())), x.sum()]))
        count = count_and_sum[0]
        if count == 0:
            return x.clone()
        centered = x - count_and_sum[1] / count
        return centered / ((sum_over_ranks(centered.pow(2).sum()) / count).sqrt() + eps)
    if x.numel() == 0:
        return x.clone()
    centered = x - x.mean()
    return centered / (centered.pow(2).mean().sqrt() + eps)
