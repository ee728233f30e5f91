"""GAE on tiny rollouts whose advantages are worked out by hand (gamma = 0.9, lam = 0.8 unless named)."""

from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from vlmrl.algos import gae, normalize

GAMMA, LAM = 0.9, 0.8  # gamma * lam = 0.72


def col(*xs: float) -> torch.Tensor:
    """One environment: a (T, 1) float tensor."""
    return torch.tensor(xs, dtype=torch.float32).unsqueeze(1)


def flags(*xs: int) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.bool).unsqueeze(1)


def test_no_episode_end_bootstraps_from_the_next_value():
    # delta = r + 0.9 * V' - V = [1 + 0.9 - 0.5, 0 + 1.35 - 1, 2 + 1.8 - 1.5] = [1.4, 0.35, 2.3]
    # A2 = 2.3; A1 = 0.35 + 0.72 * 2.3 = 2.006; A0 = 1.4 + 0.72 * 2.006 = 2.84432
    advantages, returns = gae(
        col(1.0, 0.0, 2.0), col(0.5, 1.0, 1.5), col(1.0, 1.5, 2.0), flags(0, 0, 0), flags(0, 0, 0), GAMMA, LAM
    )
    assert_close(advantages, col(2.84432, 2.006, 2.3))
    assert_close(returns, col(3.34432, 3.006, 3.8))


def test_termination_stops_bootstrap_and_advantage_flow():
    # step 1 terminates: delta1 = 2 - 1 = 1 (the 99 is never read), and A1 does not see A2.
    # A2 = 3 + 0.9 * 0.4 - 0.2 = 3.16; A1 = 1.0; A0 = (1 + 0.9 - 0.5) + 0.72 * 1.0 = 2.12
    rewards, values, next_values = col(1.0, 2.0, 3.0), col(0.5, 1.0, 0.2), col(1.0, 99.0, 0.4)
    advantages, returns = gae(rewards, values, next_values, flags(0, 1, 0), flags(0, 0, 0), GAMMA, LAM)
    assert_close(advantages, col(2.12, 1.0, 3.16))
    assert_close(returns, col(2.62, 2.0, 3.36))

    other_episode, _ = gae(col(1.0, 2.0, -50.0), values, next_values, flags(0, 1, 0), flags(0, 0, 0), GAMMA, LAM)
    assert_close(other_episode[:2], advantages[:2])


def test_truncated_episode_bootstraps_from_last_value():
    # step 1 is cut by a time limit; the caller supplies V(final obs) = 5.0 as next_values[1].
    # delta1 = 2 + 0.9 * 5 - 1 = 5.5 and A1 = 5.5 (no flow from the next episode's A2 = 3.16);
    # A0 = 1.4 + 0.72 * 5.5 = 5.36
    rewards, values, next_values = col(1.0, 2.0, 3.0), col(0.5, 1.0, 0.2), col(1.0, 5.0, 0.4)
    advantages, returns = gae(rewards, values, next_values, flags(0, 0, 0), flags(0, 1, 0), GAMMA, LAM)
    assert_close(advantages, col(5.36, 5.5, 3.16))
    assert_close(returns, col(5.86, 6.5, 3.36))

    other_episode, _ = gae(col(1.0, 2.0, -50.0), values, next_values, flags(0, 0, 0), flags(0, 1, 0), GAMMA, LAM)
    assert_close(other_episode[:2], advantages[:2])


@pytest.mark.parametrize("ignored", [0.0, 1e6, math.nan])
def test_terminated_last_step_ignores_next_values(ignored):
    # A1 = 2 - 1 = 1; A0 = (1 + 0.9 - 0.5) + 0.72 * 1 = 2.12, whatever sits in next_values[1]
    advantages, returns = gae(col(1.0, 2.0), col(0.5, 1.0), col(1.0, ignored), flags(0, 1), flags(0, 0), GAMMA, LAM)
    assert_close(advantages, col(2.12, 1.0))
    assert_close(returns, col(2.62, 2.0))


def test_environments_with_different_endings_are_independent():
    # env 0 runs on: delta = 1 + 0.45 - 0.5 = 0.95 twice; A = [0.95 * 1.72, 0.95] = [1.634, 0.95]
    # env 1 terminates at step 0: A0 = 1 - 0.5 = 0.5, A1 = 0.95
    rewards = torch.tensor([[1.0, 1.0], [1.0, 1.0]])
    values = torch.full((2, 2), 0.5)
    next_values = torch.tensor([[0.5, 99.0], [0.5, 0.5]])
    terminated = torch.tensor([[False, True], [False, False]])
    truncated = torch.zeros(2, 2, dtype=torch.bool)
    advantages, _ = gae(rewards, values, next_values, terminated, truncated, GAMMA, LAM)
    assert_close(advantages, torch.tensor([[1.634, 0.5], [0.95, 0.95]]))
    for i in range(2):
        alone, _ = gae(
            rewards[:, i : i + 1],
            values[:, i : i + 1],
            next_values[:, i : i + 1],
            terminated[:, i : i + 1],
            truncated[:, i : i + 1],
            GAMMA,
            LAM,
        )
        assert_close(advantages[:, i : i + 1], alone)


def test_lambda_one_is_monte_carlo_return_minus_value():
    # an episode that terminates at its last step: returns are the discounted reward sums
    # G2 = 3, G1 = 2 + 0.9 * 3 = 4.7, G0 = 1 + 0.9 * 4.7 = 5.23, whatever the values in between
    values = col(0.5, 1.0, 1.5)
    advantages, returns = gae(
        col(1.0, 2.0, 3.0), values, col(1.0, 1.5, 7.0), flags(0, 0, 1), flags(0, 0, 0), GAMMA, 1.0
    )
    assert_close(returns, col(5.23, 4.7, 3.0))
    assert_close(advantages, col(4.73, 3.7, 1.5))


def test_lambda_zero_is_the_one_step_td_error():
    advantages, _ = gae(
        col(1.0, 0.0, 2.0), col(0.5, 1.0, 1.5), col(1.0, 1.5, 2.0), flags(0, 0, 0), flags(0, 0, 0), GAMMA, 0.0
    )
    assert_close(advantages, col(1.4, 0.35, 2.3))


def test_gamma_zero_is_reward_minus_value():
    advantages, returns = gae(
        col(1.0, 0.0, 2.0), col(0.5, 1.0, 1.5), col(1.0, 1.5, 2.0), flags(0, 0, 0), flags(0, 0, 0), 0.0, 0.95
    )
    assert_close(advantages, col(0.5, -1.0, 0.5))
    assert_close(returns, col(1.0, 0.0, 2.0))


def test_gae_returns_float32_and_leaves_inputs_untouched():
    rewards = torch.tensor([[1.0], [0.0], [2.0]], dtype=torch.float64)
    values, next_values = col(0.5, 1.0, 1.5), col(1.0, 1.5, 2.0)
    terminated, truncated = flags(0, 0, 0), flags(0, 1, 0)
    copies = [x.clone() for x in (rewards, values, next_values, terminated, truncated)]
    advantages, returns = gae(rewards, values, next_values, terminated, truncated, GAMMA, LAM)
    assert advantages.dtype == returns.dtype == torch.float32
    for original, copy in zip((rewards, values, next_values, terminated, truncated), copies, strict=True):
        assert torch.equal(original, copy)


def test_gae_rejects_mismatched_shapes():
    with pytest.raises(ValueError, match="rewards"):
        gae(torch.zeros(3, 2), torch.zeros(3, 1), torch.zeros(3, 1), flags(0, 0, 0), flags(0, 0, 0), GAMMA, LAM)


def test_normalize_gives_zero_mean_unit_std():
    # mean 2.5, population std sqrt(1.25) = 1.118034
    assert_close(
        normalize(torch.tensor([1.0, 2.0, 3.0, 4.0])), torch.tensor([-1.341641, -0.447214, 0.447214, 1.341641])
    )


def test_normalize_of_one_element_or_constant_is_zeros():
    assert_close(normalize(torch.tensor([3.0])), torch.tensor([0.0]))
    assert_close(normalize(torch.full((2, 3), 7.0)), torch.zeros(2, 3))
