"""PPO losses on small tensors whose values and gradients are worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from vlmrl.algos import kl_to_reference, minibatch_indices, ppo_losses


def logratios(*ratios: float) -> torch.Tensor:
    """New log-probs whose ratio to old log-probs of 0 is `ratios`, as a leaf that collects gradients."""
    return torch.tensor([math.log(r) for r in ratios], requires_grad=True)


def losses(new_logprob, advantages, clip=0.2, **kwargs):
    """Policy terms only: old log-probs 0, and value / entropy inputs that contribute nothing."""
    zeros = torch.zeros(len(advantages))
    args = dict(
        old_logprob=zeros,
        new_value=zeros,
        old_value=zeros,
        returns=zeros,
        entropy=zeros,
        value_clip=None,
        value_coef=0.5,
        entropy_coef=0.0,
    )
    args.update(kwargs)
    return ppo_losses(new_logprob=new_logprob, advantages=torch.tensor(advantages), clip=clip, **args)


def test_ratio_inside_clip_range_is_the_plain_surrogate():
    new_logprob = logratios(1.1, 0.9)
    out = losses(new_logprob, [1.0, -2.0])
    # -A * ratio = [-1.1, 1.8] -> mean 0.35; d/d logprob = -A * ratio / B = [-0.55, 0.9]
    assert_close(out.pg_loss, torch.tensor(0.35))
    out.pg_loss.backward()
    assert_close(new_logprob.grad, torch.tensor([-0.55, 0.9]))
    assert out.clipfrac.item() == 0.0
    # ((r - 1) - ln r): [0.1 - 0.0953102, -0.1 + 0.1053605] -> mean 0.00502515
    assert_close(out.approx_kl, torch.tensor(0.00502515))


def test_ratio_above_one_plus_clip_with_positive_advantage_is_clipped():
    new_logprob = logratios(1.5, 1.5)
    out = losses(new_logprob, [2.0, -1.0])
    # sample 0: max(-2 * 1.5, -2 * 1.2) = -2.4, clipped; sample 1: max(1.5, 1.2) = 1.5, not clipped
    assert_close(out.pg_loss, torch.tensor(-0.45))
    out.pg_loss.backward()
    assert_close(new_logprob.grad, torch.tensor([0.0, 0.75]))  # sample 1: -A * ratio / B = 1.5 / 2


def test_ratio_below_one_minus_clip_with_negative_advantage_is_clipped():
    new_logprob = logratios(0.5, 0.5)
    out = losses(new_logprob, [-2.0, 1.0])
    # sample 0: max(2 * 0.5, 2 * 0.8) = 1.6, clipped; sample 1: max(-0.5, -0.8) = -0.5, not clipped
    assert_close(out.pg_loss, torch.tensor(0.55))
    out.pg_loss.backward()
    assert_close(new_logprob.grad, torch.tensor([0.0, -0.25]))  # sample 1: -A * ratio / B = -0.5 / 2


def test_clipfrac_and_approx_kl_values():
    out = losses(logratios(1.1, 1.3, 0.7, 1.0), [1.0, 1.0, 1.0, 1.0])
    assert_close(out.clipfrac, torch.tensor(0.5))  # 1.3 and 0.7 lie outside [0.8, 1.2]
    # (r - 1) - ln r = [0.1 - 0.0953102, 0.3 - 0.2623643, -0.3 + 0.3566749, 0] -> sum 0.0990004
    assert_close(out.approx_kl, torch.tensor(0.0247501))
    assert not out.approx_kl.requires_grad and not out.clipfrac.requires_grad


def test_identical_logprobs_give_ratio_one():
    new_logprob = torch.tensor([-1.2, -0.3, -2.0], requires_grad=True)
    out = losses(new_logprob, [1.0, -2.0, 4.0], old_logprob=torch.tensor([-1.2, -0.3, -2.0]))
    assert_close(out.pg_loss, torch.tensor(-1.0))  # -mean(A) = -(1 - 2 + 4) / 3
    assert out.approx_kl.item() == 0.0
    assert out.clipfrac.item() == 0.0
    out.pg_loss.backward()
    assert_close(new_logprob.grad, torch.tensor([-1.0, 2.0, -4.0]) / 3)


def test_value_clipping_takes_the_larger_loss():
    # sample 0: unclipped (1 - 2)^2 = 1; clipped 0.5 + 0.1 = 0.6 -> (0.6 - 2)^2 = 1.96, the larger
    # sample 1: unclipped (0.2 - 1)^2 = 0.64, the larger; clipped 0.5 - 0.1 = 0.4 -> 0.36
    new_value = torch.tensor([1.0, 0.2], requires_grad=True)
    out = losses(
        logratios(1.0, 1.0),
        [0.0, 0.0],
        new_value=new_value,
        old_value=torch.tensor([0.5, 0.5]),
        returns=torch.tensor([2.0, 1.0]),
        value_clip=0.1,
    )
    assert_close(out.v_loss, torch.tensor(0.65))  # 0.5 * (1.96 + 0.64) / 2
    out.v_loss.backward()
    # the clipped sample no longer pulls the value; sample 1: 0.5 * 2 * (0.2 - 1) / 2
    assert_close(new_value.grad, torch.tensor([0.0, -0.4]))


def test_value_clip_none_is_half_the_squared_error():
    new_value = torch.tensor([1.0, 0.2], requires_grad=True)
    out = losses(
        logratios(1.0, 1.0),
        [0.0, 0.0],
        new_value=new_value,
        old_value=torch.tensor([0.5, 0.5]),
        returns=torch.tensor([2.0, 1.0]),
        value_clip=None,
    )
    assert_close(out.v_loss, torch.tensor(0.41))  # 0.5 * (1 + 0.64) / 2
    out.v_loss.backward()
    assert_close(new_value.grad, torch.tensor([-0.5, -0.4]))


def test_entropy_and_reference_kl_enter_the_total_with_their_signs_and_coefficients():
    entropy = torch.tensor([1.0, 2.0], requires_grad=True)
    new_logprob = torch.tensor([0.0, 0.0], requires_grad=True)
    kl_ref = torch.tensor(0.25, requires_grad=True)
    out = ppo_losses(
        new_logprob,
        torch.zeros(2),
        torch.zeros(2),
        new_value=torch.tensor([1.0, 0.0]),
        old_value=torch.zeros(2),
        returns=torch.zeros(2),
        entropy=entropy,
        clip=0.2,
        value_clip=None,
        value_coef=0.5,
        entropy_coef=0.01,
        kl_ref=kl_ref,
        kl_coef=0.1,
    )
    assert_close(out.pg_loss, torch.tensor(0.0))
    assert_close(out.v_loss, torch.tensor(0.25))  # 0.5 * (1 + 0) / 2
    assert_close(out.entropy, torch.tensor(1.5))
    assert_close(out.kl_ref, torch.tensor(0.25))
    assert_close(out.loss, torch.tensor(0.135))  # 0 - 0.01 * 1.5 + 0.5 * 0.25 + 0.1 * 0.25
    out.loss.backward()
    assert_close(entropy.grad, torch.tensor([-0.005, -0.005]))  # more entropy lowers the loss
    assert_close(kl_ref.grad, torch.tensor(0.1))  # more KL raises the loss by kl_coef


def test_reference_kl_is_summed_token_by_token_and_pulls_each_drifted_token_back():
    # sample 0: token 0 drifted (d = ref - new = ln 2), token 1 did not; sample 1: token 0 drifted
    # the other way (d = -ln 2) and its response ends there (zeros past the end count nothing)
    new = torch.tensor([[0.0, -1.0], [0.0, 0.0]], requires_grad=True)
    ref = torch.tensor([[math.log(2), -1.0], [-math.log(2), 0.0]])
    kl = kl_to_reference(new, ref)
    # k3 per token: exp(d) - d - 1, i.e. 1 - ln 2 and 0.5 + ln 2 - 1; summed per response, mean over two
    assert_close(kl, torch.tensor(0.25))
    kl.backward()
    # d/d new of mean(exp(d) - d - 1) = (1 - exp(d)) / 2: the drifted tokens only, each back towards ref
    assert_close(new.grad, torch.tensor([[-0.5, 0.0], [0.25, 0.0]]))


def test_a_sequence_level_kl_would_hide_drifts_that_cancel_but_the_token_sum_does_not():
    new = torch.tensor([[0.0, 0.0]])
    ref = torch.tensor([[math.log(2), -math.log(2)]])  # one token up, one down: the sums are equal
    assert_close(kl_to_reference(new, ref), torch.tensor(0.5))  # (1 - ln 2) + (0.5 + ln 2 - 1)


def test_reference_kl_is_zero_without_a_reference_and_required_with_a_coefficient():
    out = losses(logratios(1.2, 0.9), [1.0, 1.0])
    assert out.kl_ref.item() == 0.0
    with pytest.raises(ValueError, match="kl_ref"):
        losses(logratios(1.2, 0.9), [1.0, 1.0], kl_coef=0.1)


def test_minibatch_indices_cover_every_index_once():
    batches = minibatch_indices(10, 4, torch.Generator().manual_seed(0))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert sorted(torch.cat(batches).tolist()) == list(range(10))


def test_minibatch_indices_reproduce_from_the_generator_seed_alone():
    torch.manual_seed(1)
    first = minibatch_indices(10, 4, torch.Generator().manual_seed(7))
    torch.manual_seed(2)  # the global RNG plays no part
    again = minibatch_indices(10, 4, torch.Generator().manual_seed(7))
    other = minibatch_indices(10, 4, torch.Generator().manual_seed(8))
    assert torch.equal(torch.cat(first), torch.cat(again))
    assert not torch.equal(torch.cat(first), torch.cat(other))
