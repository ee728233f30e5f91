"""GRPO and GiGPO advantages on tiny groups worked out by hand, and the properties that define them."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

from vlmrl.algos.group_advantages import gigpo, grpo, relative_to_peers, returns_to_go, tied_groups


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


def ids(*xs: int) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.long)


def test_grpo_gives_every_step_its_episodes_return_relative_to_its_group():
    # group 0: episodes 0 (steps 0, 1: return 1) and 1 (step 2: return 0); group 1: episodes 2, 3 (returns 2, 2)
    rewards = t(0.0, 1.0, 0.0, 2.0, 1.0, 1.0)
    episode = ids(0, 0, 1, 2, 3, 3)
    group = ids(0, 0, 0, 1, 1, 1)
    # group 0: mean 0.5, std (Bessel) sqrt((0.25 + 0.25) / 1) = 0.7071: +-0.5 / 0.7071 = +-0.7071
    # group 1: both returns 2, so both advantages 0
    s = 1 / math.sqrt(2)
    assert_close(grpo(rewards, episode, group), t(s, s, -s, 0.0, 0.0, 0.0), atol=1e-5, rtol=0)
    assert_close(grpo(rewards, episode, group, scale=False), t(0.5, 0.5, -0.5, 0.0, 0.0, 0.0))


def test_grpo_with_four_episodes_uses_the_bessel_corrected_deviation():
    rewards, episode, group = t(1.0, 0.0, 0.0, 1.0), ids(0, 1, 2, 3), ids(7, 7, 7, 7)
    # mean 0.5, std sqrt(4 * 0.25 / 3) = 0.57735: advantages +-0.5 / 0.57735 = +-0.86603
    expected = 0.5 / math.sqrt(1 / 3)
    assert_close(grpo(rewards, episode, group), t(expected, -expected, -expected, expected), atol=1e-5, rtol=0)


def test_a_group_of_one_episode_has_nothing_to_compare_with():
    assert_close(grpo(t(3.0, 4.0), ids(5, 5), ids(1, 1)), t(0.0, 0.0))


def test_tied_groups_counts_the_groups_whose_episodes_all_returned_the_same():
    # group 0: returns 1 and 0 (spread); group 1: returns 2 and 2 over different step counts (tied);
    # group 2: one episode (nothing to compare, not counted)
    rewards = t(0.0, 1.0, 0.0, 2.0, 1.0, 1.0, 5.0)
    episode = ids(0, 0, 1, 2, 3, 3, 4)
    group = ids(0, 0, 0, 1, 1, 1, 2)
    assert tied_groups(rewards, episode, group) == (2, 1)
    assert tied_groups(t(), ids(), ids()) == (0, 0)


def test_returns_to_go_discount_to_each_episodes_end():
    # episode 0: rewards 0, 0, 1 -> 0.25, 0.5, 1 (gamma 0.5); episode 1, interleaved: 2, 1 -> 2.5, 1
    rewards, episode = t(0.0, 2.0, 0.0, 1.0, 1.0), ids(0, 1, 0, 1, 0)
    assert_close(returns_to_go(rewards, episode, 0.5), t(0.25, 2.5, 0.5, 1.0, 1.0))


def test_gigpo_adds_the_comparison_of_steps_that_saw_the_same_state():
    # one group, two episodes from the same deal: both start in state 10; episode 0 then sees 11 and is rewarded,
    # episode 1 sees 12 and is not. Episode term: returns 1 vs 0 -> +-0.7071.
    # Step term (gamma 0.5): state 10 was seen by both: returns-to-go 0.5 vs 0 -> +-0.7071; 11 and 12 alone -> 0.
    rewards, episode, group, state = t(0.0, 1.0, 0.0, 0.0), ids(0, 0, 1, 1), ids(0, 0, 0, 0), ids(10, 11, 10, 12)
    s = 1 / math.sqrt(2)
    advantages = gigpo(rewards, episode, group, state, gamma=0.5, step_weight=0.5)
    assert_close(advantages, t(s + 0.5 * s, s, -s - 0.5 * s, -s), atol=1e-5, rtol=0)
    assert_close(gigpo(rewards, episode, group, state, 0.5, step_weight=0.0), grpo(rewards, episode, group))


def test_the_same_state_in_different_groups_is_not_compared():
    # state 10 in group 0 and group 1: the step term compares nothing (each (group, state) is seen once)
    rewards, episode, group, state = t(1.0, 0.0), ids(0, 1), ids(0, 1), ids(10, 10)
    assert_close(gigpo(rewards, episode, group, state, gamma=0.9), t(0.0, 0.0))


def test_bad_shapes_and_an_episode_in_two_groups_are_refused():
    with pytest.raises(ValueError, match="group has shape"):
        grpo(t(1.0, 2.0), ids(0, 1), ids(0))
    with pytest.raises(ValueError, match="in more than one group"):
        grpo(t(1.0, 2.0), ids(0, 0), ids(0, 1))
    with pytest.raises(ValueError, match="3 values for 2 keys"):
        relative_to_peers(t(1.0, 2.0, 3.0), ids(0, 1))


@st.composite
def groups_of_episodes(draw):
    """Whole episodes of 1-4 steps, in 1-4 groups of 1-4 episodes, steps of the episodes interleaved."""
    steps = []
    number = 0
    for g in range(draw(st.integers(1, 4))):
        for _ in range(draw(st.integers(1, 4))):
            length = draw(st.integers(1, 4))
            rewards = draw(st.lists(st.floats(-10, 10, allow_nan=False), min_size=length, max_size=length))
            steps += [(number, g, r) for r in rewards]
            number += 1
    order = draw(st.permutations(range(len(steps))))
    # keep each episode's own steps in time order, whatever the interleaving
    by_episode: dict[int, list] = {}
    for step in steps:
        by_episode.setdefault(step[0], []).append(step)
    taken = {e: 0 for e in by_episode}
    shuffled = []
    for k in order:
        e = steps[k][0]
        shuffled.append(by_episode[e][taken[e]])
        taken[e] += 1
    episode, group, rewards = zip(*shuffled, strict=True)
    return t(*rewards), ids(*episode), ids(*group)


@settings(max_examples=200, deadline=None)
@given(groups_of_episodes(), st.floats(-5, 5), st.floats(0.1, 10))
def test_grpo_is_unchanged_by_shifting_or_scaling_the_rewards_of_whole_episodes(data, shift, factor):
    rewards, episode, group = data
    advantages = grpo(rewards, episode, group)
    # shift every episode's return by the same amount: put it on each episode's first step
    first = torch.zeros_like(rewards)
    seen = set()
    for k, e in enumerate(episode.tolist()):
        if e not in seen:
            first[k], seen = shift, seen | {e}
    assert_close(
        grpo(rewards + first, episode, group, scale=False),
        grpo(rewards, episode, group, scale=False),
        atol=1e-3,
        rtol=1e-4,
    )
    # scaling changes nothing in a group whose deviation dominates eps (another group's may not)
    centered = grpo(rewards, episode, group, scale=False).abs()
    spread = torch.zeros(int(group.max()) + 1).scatter_reduce(0, group, centered, "amax", include_self=False)
    wide = spread[group] > 1e-2
    assert_close(grpo(rewards * factor, episode, group)[wide], advantages[wide], atol=1e-3, rtol=1e-3)


@settings(max_examples=200, deadline=None)
@given(groups_of_episodes())
def test_grpo_advantages_of_each_groups_episodes_sum_to_zero(data):
    rewards, episode, group = data
    advantages = grpo(rewards, episode, group, scale=False)
    per_episode = {}
    for e, g, a in zip(episode.tolist(), group.tolist(), advantages.tolist(), strict=True):
        per_episode[e] = (g, a)  # every step of an episode carries the same advantage
    for g in set(group.tolist()):
        assert abs(sum(a for gg, a in per_episode.values() if gg == g)) < 1e-3


@settings(max_examples=200, deadline=None)
@given(groups_of_episodes())
def test_a_group_is_tied_exactly_when_its_returns_are_equal(data):
    rewards, episode, group = data
    members: dict[int, set[int]] = {}
    for e, g in zip(episode.tolist(), group.tolist(), strict=True):
        members.setdefault(g, set()).add(e)
    returns = {e: float(rewards[episode == e].double().sum()) for e in set(episode.tolist())}
    spreads = [max(returns[e] for e in es) - min(returns[e] for e in es) for es in members.values() if len(es) >= 2]
    compared, tied = tied_groups(rewards, episode, group)
    assert compared == len(spreads)
    # equal returns are tied, clearly different ones are not (between lies float32 rounding)
    assert sum(spread == 0 for spread in spreads) <= tied <= sum(spread < 1e-3 for spread in spreads)
