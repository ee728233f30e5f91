"""Every reward and termination rule of EZPoints and Points24, case by case."""

import itertools
from collections import Counter
from fractions import Fraction

import pytest

from vlmrl.games.cards import RANKS, Card, rank_value
from vlmrl.games.ezpoints import EZPointsEnv, EZPointsTask
from vlmrl.games.formula import is_solvable
from vlmrl.games.points24 import Points24Env, Points24Task


def dealt(make_game, name: str, ranks: list[str]):
    env = make_game(name)
    env.cards = [Card(rank, "hearts") for rank in ranks]
    env.remaining = env.values
    env.formula = []
    return env


def press(env, *names):
    """Press actions by name; returns the last step's result."""
    result = None
    for name in names:
        result = env.step(env.action_names.index(name))
    return result


def test_action_sets_match_the_reference():
    assert EZPointsEnv().action_names == tuple(str(n) for n in range(1, 11)) + ("+", "*", "=")
    assert Points24Env().action_names == tuple(str(n) for n in range(1, 11)) + ("+", "-", "*", "/", "(", ")", "=")


def test_a_number_on_the_cards_is_appended_without_reward(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    _, reward, terminated, truncated, info = press(env, "3")
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["formula"] == "3" and info["remaining"] == [4]


def test_a_number_not_on_the_cards_costs_one_and_the_episode_goes_on(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    _, reward, terminated, truncated, info = press(env, "5")
    assert (reward, terminated, truncated) == (-1.0, False, False)
    assert info["formula"] == ""


def test_a_number_used_more_often_than_dealt_costs_one(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    press(env, "3", "+")
    _, reward, terminated, _, info = press(env, "3")
    assert reward == -1.0 and not terminated and info["formula"] == "3+"


def test_face_cards_count_ten(make_game):
    env = dealt(make_game, "ezpoints", ["K", "2"])
    _, reward, _, _, info = press(env, "10", "+", "2", "=")
    assert reward == 10.0 and info["success"] is True


def test_equals_on_a_correct_formula_pays_ten_and_succeeds(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    _, reward, terminated, truncated, info = press(env, "4", "*", "3", "=")
    assert (reward, terminated, truncated, info["success"]) == (10.0, True, False, True)


def test_equals_on_a_wrong_value_costs_one_and_ends(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    _, reward, terminated, _, info = press(env, "3", "+", "4", "=")
    assert (reward, terminated, info["success"]) == (-1.0, True, False)


def test_equals_on_an_empty_or_broken_formula_costs_one_and_ends(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    _, reward, terminated, _, info = press(env, "=")
    assert (reward, terminated, info["success"]) == (-1.0, True, False)
    env = dealt(make_game, "ezpoints", ["3", "4"])
    _, reward, terminated, _, _ = press(env, "3", "*", "=")
    assert (reward, terminated) == (-1.0, True)


def test_adjacent_numbers_are_not_concatenated(make_game):
    """The original evaluated "1","2" as 12 with eval(); here it is an invalid formula."""
    env = dealt(make_game, "ezpoints", ["A", "2"])
    _, reward, terminated, _, info = press(env, "1", "2", "=")
    assert (reward, terminated, info["success"]) == (-1.0, True, False)


def test_more_than_five_elements_truncates_with_minus_one(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    for _ in range(5):
        _, reward, terminated, truncated, _ = press(env, "+")
        assert (reward, terminated, truncated) == (0.0, False, False)
    _, reward, terminated, truncated, info = press(env, "+")
    assert (reward, terminated, truncated, info["success"]) == (-1.0, False, True, False)


def test_steps_are_bounded_even_when_the_formula_never_grows(make_game):
    env = dealt(make_game, "ezpoints", ["3", "4"])
    for step in range(1, env.max_steps + 1):
        _, reward, terminated, truncated, info = press(env, "9")
        assert reward == -1.0 and not terminated
        assert truncated == (step == env.max_steps)
    assert info["success"] is False


def test_points24_accepts_parentheses_division_and_subtraction(make_game):
    env = dealt(make_game, "points24", ["3", "3", "8", "8"])
    _, reward, _, _, info = press(env, "8", "/", "(", "3", "-", "8", "/", "3", ")", "=")
    assert reward == 10.0 and info["success"] is True


def test_points24_needs_every_card(make_game):
    env = dealt(make_game, "points24", ["4", "6", "A", "A"])
    _, reward, terminated, _, info = press(env, "4", "*", "6", "=")
    assert (reward, terminated, info["success"]) == (-1.0, True, False)


def test_points24_division_by_zero_is_a_wrong_formula(make_game):
    env = dealt(make_game, "points24", ["4", "4", "6", "6"])
    _, reward, _, _, info = press(env, "4", "/", "(", "6", "-", "6", ")", "*", "4", "=")
    assert reward == -1.0 and info["success"] is False


def test_points24_truncates_past_twenty_elements(make_game):
    env = dealt(make_game, "points24", ["4", "4", "6", "6"])
    for _ in range(20):
        _, reward, _, truncated, _ = press(env, "(")
        assert reward == 0.0 and not truncated
    _, reward, terminated, truncated, info = press(env, "(")
    assert (reward, terminated, truncated, info["success"]) == (-1.0, False, True, False)


def test_ezpoints_deals_follow_the_reference_distribution():
    env = EZPointsEnv()
    pairs = Counter()
    for seed in range(2000):
        env.reset(seed=seed)
        values = env.values
        assert len(values) == 2 and all(2 <= v <= 10 for v in values)
        assert is_solvable(values, 12, "+*")
        pairs[tuple(sorted(values))] += 1
    # 6 pairs with 6 (via 12 // 6 = 2) or with 2 (via 12 - 6): both occur; (5, 7) is common.
    assert pairs[(6, 6)] > 0 and pairs[(2, 6)] > 0 and pairs[(5, 7)] > 0
    assert set(pairs) <= {(2, 10), (2, 6), (3, 9), (3, 4), (4, 8), (5, 7), (6, 6)}


def test_ezpoints_ceiling_is_one():
    assert EZPointsTask().ceiling() == 1


def test_points24_ceiling_is_the_exact_fraction_of_solvable_deals():
    """Enumerate all 13**4 ordered rank deals independently of the multiset weighting."""
    solvable = 0
    cache: dict[tuple[int, ...], bool] = {}
    for ranks in itertools.product(RANKS, repeat=4):
        values = tuple(sorted(rank_value(r) for r in ranks))
        if values not in cache:
            cache[values] = is_solvable(list(values), 24)
        solvable += cache[values]
    assert Points24Task().ceiling() == Fraction(solvable, 13**4)
    assert 0.72 < float(Points24Task().ceiling()) < 0.74


@pytest.mark.parametrize("name", ["ezpoints", "points24"])
def test_info_tells_the_prompt_the_current_formula(make_game, name):
    env = dealt(make_game, name, ["3", "4"] if name == "ezpoints" else ["3", "4", "5", "6"])
    _, _, _, _, info = press(env, "3", "+")
    assert info["formula"] == "3+"
    task = EZPointsTask() if name == "ezpoints" else Points24Task()
    assert "The current formula is: 3+" in task.prompt(info)
