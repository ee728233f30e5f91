"""Blackjack's rules case by case, and its ceiling against independent estimates."""

import random

import numpy as np
import pytest

from vlmrl.games.blackjack import (
    CARD_VALUES,
    HIT,
    STAND,
    BlackjackEnv,
    best_win_rate,
    dealer_outcomes,
    hand_total,
    optimal_action,
)
from vlmrl.games.cards import Card


def table(make_game, player: list[str], dealer: list[str], deck: list[str] = ()) -> BlackjackEnv:
    """A game with the given hands whose next cards are `deck`, in order."""
    env = make_game("blackjack")
    env.player = [Card(r, "spades") for r in player]
    env.dealer = [Card(r, "hearts") for r in dealer]
    upcoming = [Card(r, "clubs") for r in deck]
    env._draw_card = lambda: upcoming.pop(0)
    return env


def test_hitting_without_busting_pays_nothing_and_goes_on(make_game):
    env = table(make_game, ["5", "6"], ["10", "7"], deck=["9"])
    _, reward, terminated, truncated, info = env.step(HIT)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["player_total"] == 20 and "success" not in info


def test_busting_loses_at_once(make_game):
    env = table(make_game, ["10", "6"], ["10", "7"], deck=["K"])
    _, reward, terminated, _, info = env.step(HIT)
    assert (reward, terminated, info["success"]) == (-1.0, True, False)


def test_dealer_draws_to_seventeen_then_higher_total_wins(make_game):
    env = table(make_game, ["10", "10"], ["10", "6"], deck=["5"])
    _, reward, terminated, _, info = env.step(STAND)
    assert info["dealer_total"] == 21 and (reward, terminated, info["success"]) == (-1.0, True, False)


def test_dealer_stands_on_soft_seventeen(make_game):
    env = table(make_game, ["10", "8"], ["A", "6"], deck=["5"])
    _, reward, _, _, info = env.step(STAND)
    assert info["dealer_cards"] == ["A", "6"] and info["dealer_total"] == 17
    assert reward == 1.0 and info["success"] is True


def test_dealer_bust_is_a_win(make_game):
    env = table(make_game, ["10", "2"], ["10", "6"], deck=["9"])
    _, reward, _, _, info = env.step(STAND)
    assert info["dealer_total"] == 25 and reward == 1.0 and info["success"] is True


def test_equal_totals_draw_and_a_draw_is_no_success(make_game):
    env = table(make_game, ["10", "8"], ["9", "9"])
    _, reward, terminated, _, info = env.step(STAND)
    assert (reward, terminated, info["success"]) == (0.0, True, False)


def test_a_natural_pays_like_any_win(make_game):
    env = table(make_game, ["A", "K"], ["10", "9"])
    _, reward, _, _, info = env.step(STAND)
    assert info["player_total"] == 21 and reward == 1.0


def test_aces_count_eleven_unless_that_busts():
    assert hand_total(2, True) == 12  # A, A
    assert hand_total(11, True) == 21  # A, A, 9
    assert hand_total(17, True) == 17  # A, 6, K
    assert hand_total(12, False) == 12


def test_hole_card_is_hidden_until_the_players_turn_ends(make_game):
    env = table(make_game, ["10", "8"], ["9", "9"], deck=["8"])
    hidden_info = env.state_info()
    hidden = env.observation()
    assert "dealer_cards" not in hidden_info and hidden_info["dealer_upcard"] == "9"
    env.dealer[1] = Card("2", "hearts")
    assert np.array_equal(hidden, env.observation()), "the hole card must not show"
    env.step(STAND)
    assert not np.array_equal(hidden, env.observation())


# Dealer bust probabilities, infinite deck, dealer stands on soft 17 (published tables).
PUBLISHED_BUST = {
    1: 0.1153,
    2: 0.3536,
    3: 0.3739,
    4: 0.3945,
    5: 0.4164,
    6: 0.4232,
    7: 0.2623,
    8: 0.2447,
    9: 0.2284,
    10: 0.2121,
}


@pytest.mark.parametrize("upcard", sorted(PUBLISHED_BUST))
def test_dealer_bust_probability_matches_published_tables(upcard):
    bust = sum(
        p * q
        for hole, p in CARD_VALUES.items()
        for final, q in dealer_outcomes(upcard + hole, upcard == 1 or hole == 1)
        if final == 22
    )
    assert float(bust) == pytest.approx(PUBLISHED_BUST[upcard], abs=6e-5)


def simulate_policy(hands: int, seed: int) -> float:
    """An independent simulator of the rules, playing the DP's policy: its win rate."""
    rng = random.Random(seed)
    values = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10, 10]

    def total(cards):
        s = sum(cards)
        return s + 10 if 1 in cards and s + 10 <= 21 else s

    wins = 0
    for _ in range(hands):
        player = [rng.choice(values), rng.choice(values)]
        dealer = [rng.choice(values), rng.choice(values)]
        while total(player) <= 21 and optimal_action(sum(player), 1 in player, dealer[0]) == HIT:
            player.append(rng.choice(values))
        if total(player) > 21:
            continue
        while total(dealer) < 17:
            dealer.append(rng.choice(values))
        wins += total(dealer) > 21 or total(player) > total(dealer)
    return wins / hands


def test_ceiling_matches_a_monte_carlo_estimate_of_the_same_policy():
    hands = 200_000
    estimate = simulate_policy(hands, seed=7)
    ceiling = float(best_win_rate())
    stderr = (ceiling * (1 - ceiling) / hands) ** 0.5
    assert abs(estimate - ceiling) < 4 * stderr, (estimate, ceiling)


def test_policy_hits_when_it_cannot_bust_and_stands_on_twenty_one():
    for upcard in range(1, 11):
        for hard in range(4, 12):
            assert optimal_action(hard, False, upcard) == HIT
        assert optimal_action(21, False, upcard) == STAND
        assert optimal_action(11, True, upcard) == STAND  # soft 21
