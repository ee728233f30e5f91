"""PPO losses (Schulman et al. 2017) as in CleanRL's `ppo.py`, plus two helpers of the update loop.

Every input is one number per sample, shape (B,): the log-probability of a whole sampled
response (RL4VLM scores it as `lambda * CoT tokens + action tokens`, computed in `policy/`), the
value of its prompt, and the entropy of the policy there. The optional KL to a reference policy
is the exception: it is computed token by token, shape (B, T). The names of the loss terms follow
CleanRL so that each line can be checked against the paper. Everything is computed in float32;
the stored targets (old log-probs, advantages, old values, returns, reference log-probs) are
detached, so gradients reach only the new log-probs, new values and entropy.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass
class PPOLosses:
    loss: Tensor  # total: pg_loss - entropy_coef * entropy + value_coef * v_loss + kl_coef * kl_ref
    pg_loss: Tensor  # clipped surrogate policy loss
    v_loss: Tensor  # (optionally clipped) value loss, already halved
    entropy: Tensor  # mean entropy of the policy over the batch
    approx_kl: Tensor  # ((ratio - 1) - logratio).mean(), detached: how far the policy moved this update
    clipfrac: Tensor  # fraction of samples with |ratio - 1| > clip, detached
    kl_ref: Tensor  # mean over samples of the summed per-token k3 KL to the reference; 0 without one


def policy_loss(
    new_logprob: Tensor, old_logprob: Tensor, advantages: Tensor, clip: float
) -> tuple[Tensor, Tensor, Tensor]:
    """The clipped surrogate objective, negated; returns `(pg_loss, approx_kl, clipfrac)`."""
    logratio = new_logprob.float() - old_logprob.detach().float()
    ratio = logratio.exp()
    with torch.no_grad():
        # http://joschu.net/blog/kl-approx.html: unbiased, non-negative, low variance
        approx_kl = ((ratio - 1) - logratio).mean()
        clipfrac = ((ratio - 1.0).abs() > clip).float().mean()
    advantages = advantages.detach().float()
    pg_loss1 = -advantages * ratio
    pg_loss2 = -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)
    pg_loss = torch.max(pg_loss1, pg_loss2).mean()
    return pg_loss, approx_kl, clipfrac


def value_loss(new_value: Tensor, old_value: Tensor, returns: Tensor, value_clip: float | None) -> Tensor:
    """Half the squared error to the returns; with `value_clip`, the larger of the clipped and unclipped errors.

    Clipping keeps the new value within `value_clip` of the value seen at collection time,
    the critic's counterpart of the ratio clip (RL4VLM uses 0.1).
    """
    new_value, returns = new_value.float(), returns.detach().float()
    v_loss_unclipped = (new_value - returns) ** 2
    if value_clip is None:
        return 0.5 * v_loss_unclipped.mean()
    old_value = old_value.detach().float()
    v_clipped = old_value + torch.clamp(new_value - old_value, -value_clip, value_clip)
    v_loss_clipped = (v_clipped - returns) ** 2
    return 0.5 * torch.max(v_loss_unclipped, v_loss_clipped).mean()


def kl_to_reference(token_logprob: Tensor, ref_token_logprob: Tensor) -> Tensor:
    """KL(new || ref) of whole responses: per token the k3 estimate `exp(ref - new) - (ref - new) - 1`,
    summed over each response, averaged over the batch. Shapes (B, T), zero past each response's end.

    Each term is non-negative and its mean is unbiased when samples come from the new policy
    (here they come from the rollout policy, close to it: the usual approximation, as in TRL and
    verl). Token by token, every token that drifts is pulled back on its own: a sequence-level
    estimate mixes the drift of a response's tokens into one number, so a token the advantages
    only push at random (a number read from the image, say) gets no restoring force of its own.
    """
    log_ref_over_new = ref_token_logprob.detach().float() - token_logprob.float()
    return (log_ref_over_new.exp() - log_ref_over_new - 1).sum(-1).mean()


def ppo_losses(
    new_logprob: Tensor,
    old_logprob: Tensor,
    advantages: Tensor,
    new_value: Tensor,
    old_value: Tensor,
    returns: Tensor,
    entropy: Tensor,
    clip: float,
    value_clip: float | None,
    value_coef: float,
    entropy_coef: float,
    kl_ref: Tensor | None = None,
    kl_coef: float = 0.0,
) -> PPOLosses:
    """All PPO loss terms for one mini-batch and their weighted total, ready for `.backward()`.

    `kl_ref`, the KL to a reference policy from `kl_to_reference`, enters the total with weight
    `kl_coef` (it is logged whenever given). RL4VLM clips the value too (0.1), weighs it by 0.5, and uses
    neither an entropy bonus nor a reference KL.
    """
    if kl_coef > 0 and kl_ref is None:
        raise ValueError("kl_coef > 0 needs kl_ref, the KL to the reference policy (kl_to_reference)")
    pg_loss, approx_kl, clipfrac = policy_loss(new_logprob, old_logprob, advantages, clip)
    v_loss = value_loss(new_value, old_value, returns, value_clip)
    entropy_loss = entropy.float().mean()
    if kl_ref is None:
        kl_ref = new_logprob.new_zeros((), dtype=torch.float32)
    loss = pg_loss - entropy_coef * entropy_loss + value_coef * v_loss + kl_coef * kl_ref
    return PPOLosses(
        loss=loss,
        pg_loss=pg_loss,
        v_loss=v_loss,
        entropy=entropy_loss,
        approx_kl=approx_kl,
        clipfrac=clipfrac,
        kl_ref=kl_ref,
    )


def minibatch_indices(n: int, minibatch_size: int, generator: torch.Generator) -> list[Tensor]:
    """A random permutation of `range(n)` cut into mini-batches, the last possibly smaller.

    Only `generator` drives the shuffle (never the global RNG), so a resumed run that restores
    the generator's state draws the same mini-batches.
    """
    if minibatch_size < 1:
        raise ValueError(f"minibatch_size must be positive, got {minibatch_size}")
    return list(torch.randperm(n, generator=generator, device=generator.device).split(minibatch_size))
