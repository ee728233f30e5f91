"""The two rule sets of the card games: vlmrl's default and the original release's (`rules="rl4vlm"`).

Each fact the original was measured to differ in is pinned here under both rule sets, on the
exact states of the issue that found them: NumberLine's deal frequencies, the blank element an
absent number appends in the formula games, the truncation one step after the overlong
element, and what the images show.
"""

import itertools
import re
from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, chisquare

from vlmrl.games import TASKS, get_task, make_env
from vlmrl.games.cards import RANKS, Card
from vlmrl.games.ezpoints import deal_probabilities as ezpoints_deals
from vlmrl.games.formula import is_solvable
from vlmrl.games.formula_game import BLANK
from vlmrl.games.numberline import deal_probabilities as numberline_deals
from vlmrl.infra.errors import UsageError
from vlmrl.recipes.config import check_env_kwargs

RULES = ("vlmrl", "rl4vlm")
DEALS = 30_000


def game(name: str, rules: str, seed: int = 0):
    env = make_env(name, rules=rules).unwrapped
    env.reset(seed=seed)
    return env


def dealt(name: str, rules: str, ranks: list[str]):
    env = game(name, rules)
    env.cards = [Card(rank, "hearts") for rank in ranks]
    env.remaining = env.values
    env.formula = []
    return env


def press(env, names):
    """Press actions by name; every step's (reward, terminated, truncated)."""
    return [env.step(env.action_names.index(name))[1:4] for name in names]


def undrawn(name: str, rules: str):
    """The unwrapped game with its image left undrawn: deal statistics need thousands of resets, not pictures."""
    env = make_env(name, rules=rules).unwrapped
    env.observation = lambda: None
    return env


def frequencies_fit(counts: Counter, probabilities: dict) -> float:
    """The chi-square p-value of `counts` under the distribution `probabilities` (every outcome listed)."""
    assert set(counts) <= set(probabilities), set(counts) - set(probabilities)
    keys = sorted(probabilities)
    observed = [counts[key] for key in keys]
    total = sum(observed)
    return chisquare(observed, [float(probabilities[key]) * total for key in keys]).pvalue


# -- 1. NumberLine deals -------------------------------------------------------------------------

DOUBLED = {(0, 1), (1, 2), (2, 3), (3, 4), (4, 0), (5, 1)}


def stated_numberline(rules: str) -> dict[tuple[int, int], Fraction]:
    """The issue's statement: 30 pairs uniform (vlmrl); six pairs twice as likely as the other 24 (rl4vlm)."""
    pairs = [(c, g) for c in range(6) for g in range(6) if c != g]
    if rules == "vlmrl":
        return {pair: Fraction(1, 30) for pair in pairs}
    return {pair: Fraction(2 if pair in DOUBLED else 1, 36) for pair in pairs}


@pytest.fixture(scope="module")
def numberline_counts() -> dict[str, Counter]:
    counts = {}
    for rules in RULES:
        env = undrawn("numberline", rules)
        counts[rules] = Counter()
        for seed in range(DEALS):
            _, info = env.reset(seed=seed)
            counts[rules][(info["current"], info["target"])] += 1
    return counts


@pytest.mark.parametrize("rules", RULES)
def test_numberline_deals_follow_the_stated_distribution(numberline_counts, rules):
    assert numberline_deals(rules) == stated_numberline(rules)
    assert frequencies_fit(numberline_counts[rules], stated_numberline(rules)) > 0.01


def test_the_two_numberline_distributions_are_told_apart(numberline_counts):
    """The fit above could not pass by accident: each rule set's deals fail the other's distribution."""
    assert frequencies_fit(numberline_counts["rl4vlm"], stated_numberline("vlmrl")) < 1e-6
    assert frequencies_fit(numberline_counts["vlmrl"], stated_numberline("rl4vlm")) < 1e-6
    assert all(current != target for current, target in numberline_counts["rl4vlm"])


# -- 2. A number that is not on the cards, and 3. when the formula is too long -----------------

BOUNDS = [("ezpoints", ["3", "4"], 5), ("points24", ["2", "3", "4", "6"], 20)]


def test_the_issues_sequence_on_three_and_four():
    """`5 5 5 3 * 4 =`: the blanks make the formula six elements long in the original, so "=" truncates."""
    env = dealt("ezpoints", "rl4vlm", ["3", "4"])
    steps = press(env, ["5", "5", "5", "3", "*", "4", "="])
    assert [s[0] for s in steps] == [-1, -1, -1, 0, 0, 0, -1]
    assert steps[-1] == (-1, False, True)
    assert env.formula == [BLANK, BLANK, BLANK, "3", "*", "4"]

    env = dealt("ezpoints", "vlmrl", ["3", "4"])
    steps = press(env, ["5", "5", "5", "3", "*", "4", "="])
    assert [s[0] for s in steps] == [-1, -1, -1, 0, 0, 0, 10]
    assert steps[-1] == (10, True, False)
    assert env.formula == ["3", "*", "4"]


@pytest.mark.parametrize("rules", RULES)
def test_blanks_are_ignored_by_the_evaluation(rules):
    """Two wrong presses leave room for 3*4 within five elements: +10 under both rule sets."""
    env = dealt("ezpoints", rules, ["3", "4"])
    assert press(env, ["5", "5", "3", "*", "4", "="])[-1] == (10, True, False)


@pytest.mark.parametrize(("name", "ranks", "bound"), BOUNDS)
def test_absent_numbers_end_the_original_within_bound_plus_two_steps(name, ranks, bound):
    env = dealt(name, "rl4vlm", ranks)
    steps = press(env, ["9"] * (bound + 2))
    assert [s[0] for s in steps] == [-1] * (bound + 2)
    assert [s[2] for s in steps] == [False] * (bound + 1) + [True]
    assert env.formula == [BLANK] * (bound + 1)

    env = dealt(name, "vlmrl", ranks)
    steps = press(env, ["9"] * env.max_steps)
    assert [s[2] for s in steps] == [False] * (env.max_steps - 1) + [True]
    assert env.formula == [] and env.max_steps > bound + 2  # vlmrl bounds the steps, not the formula


@pytest.mark.parametrize(("name", "ranks", "bound"), BOUNDS)
@pytest.mark.parametrize("last", ["+", "="])
def test_the_original_accepts_the_overlong_element_and_truncates_on_the_next_action(name, ranks, bound, last):
    env = dealt(name, "rl4vlm", ranks)
    operator = "+" if name == "ezpoints" else "("
    steps = press(env, [operator] * (bound + 1) + [last])
    assert steps[:-1] == [(0, False, False)] * (bound + 1)
    assert steps[-1] == (-1, False, True)
    assert len(env.formula) == bound + 1

    env = dealt(name, "vlmrl", ranks)
    steps = press(env, [operator] * (bound + 1))
    assert steps == [(0, False, False)] * bound + [(-1, False, True)]


OPERATOR = {"ezpoints": "+", "points24": "("}


@settings(max_examples=150, deadline=None)
@given(name=st.sampled_from(["ezpoints", "points24"]), data=st.data())
def test_without_absent_numbers_both_rule_sets_pay_the_same_return(name, data):
    """Fact 3's "same return, one step shorter": any presses of the cards' numbers, operators and "=",
    then one "=" (which always ends it)."""
    ranks = ["3", "4"] if name == "ezpoints" else ["2", "3", "4", "6"]
    returns, lengths = {}, {}
    names = data.draw(
        st.lists(st.sampled_from(list(dict.fromkeys(ranks)) + ["+", OPERATOR[name], "="]), min_size=1, max_size=26)
    )
    for rules in RULES:
        env = dealt(name, rules, ranks)
        total, steps = 0.0, 0
        for action in [*names, "="]:
            if action in env.action_names[:10] and int(action) not in env.remaining:
                continue  # a card already used would be an absent number: skipped for both rule sets alike
            _, reward, terminated, truncated, _ = env.step(env.action_names.index(action))
            total, steps = total + reward, steps + 1
            if terminated or truncated:
                break
        assert terminated or truncated
        returns[rules], lengths[rules] = total, steps
    assert returns["rl4vlm"] == returns["vlmrl"]
    assert lengths["rl4vlm"] in (lengths["vlmrl"], lengths["vlmrl"] + 1)


# -- 4. What the image shows ---------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ezpoints", "points24"])
def test_the_original_draws_the_formula_and_vlmrl_only_prompts_it(name):
    """The original drew "Formula:" and the elements joined by spaces: a blank shows as a gap once an
    element follows it (a trailing one is invisible, as there)."""
    ranks = ["3", "4"] if name == "ezpoints" else ["2", "3", "4", "6"]
    for rules in RULES:
        env = dealt(name, rules, ranks)
        images = [env.observation()]
        for action in ["3", "9", "+"]:  # a number, an absent number (a blank under rl4vlm), an operator
            images.append(env.step(env.action_names.index(action))[0])
        changed = [not np.array_equal(a, b) for a, b in itertools.pairwise(images)]
        assert changed == ([True, False, True] if rules == "rl4vlm" else [False, False, False])
        without_blank = dealt(name, rules, ranks)
        press(without_blank, ["3", "+"])
        assert np.array_equal(without_blank.observation(), images[-1]) == (rules == "vlmrl")
        again = dealt(name, rules, ranks)
        press(again, ["3", "9", "+"])
        assert np.array_equal(again.observation(), images[-1])
        assert "The current formula is: 3" in get_task(name).prompt(env.state_info())


@pytest.mark.parametrize("rules", RULES)
def test_ezpoints_deals_show_the_stated_ranks(rules):
    """The original always shows a second card worth 10 as a 10; vlmrl as 10, J, Q or K."""
    env = undrawn("ezpoints", rules)
    counts = Counter()
    for seed in range(6000):
        _, info = env.reset(seed=seed)
        counts[tuple(info["cards"])] += 1
    assert frequencies_fit(counts, ezpoints_deals(rules)) > 0.01
    other = "vlmrl" if rules == "rl4vlm" else "rl4vlm"
    assert frequencies_fit(counts, ezpoints_deals(other)) < 1e-3


def test_the_ezpoints_rule_sets_deal_the_same_numbers():
    def numbers(rules):
        out = Counter()
        for (a, b), p in ezpoints_deals(rules).items():
            out[tuple(sorted(Card(r, "hearts").value for r in (a, b)))] += p
        return out

    assert numbers("vlmrl") == numbers("rl4vlm")
    assert ezpoints_deals("rl4vlm")[("2", "10")] == Fraction(1, 12) * Fraction(1, 2) * Fraction(1, 2) + Fraction(
        1, 12
    ) * Fraction(1, 2)  # 2 first then a 10 (swapped or not), or 10 first then 2 kept in order
    assert ezpoints_deals("rl4vlm")[("2", "J")] == Fraction(1, 12) * Fraction(1, 2)


@pytest.mark.parametrize("rules", RULES)
def test_blackjack_shows_tens_as_the_rule_set_says(rules):
    env = undrawn("blackjack", rules)
    ranks = Counter()
    for seed in range(4000):
        env.reset(seed=seed)
        env.step(1)  # a hit: a third card for the player
        ranks.update(card.rank for card in env.player + env.dealer)
    if rules == "vlmrl":
        stated = {rank: Fraction(1, 13) for rank in RANKS}
    else:
        stated = {rank: Fraction(4, 39) if rank in "JQK" else Fraction(1, 13) for rank in RANKS if rank != "10"}
    assert frequencies_fit(ranks, stated) > 0.01


# -- The expert stays optimal; the ceilings hold under both rule sets ---------------------------


@pytest.mark.parametrize("rules", RULES)
def test_the_formula_expert_wins_exactly_the_solvable_deals(rules):
    for name in ("ezpoints", "points24"):
        task = get_task(name)
        env = make_env(name, rules=rules)
        for seed in range(300):
            env.reset(seed=seed)
            values = env.unwrapped.values
            for _ in range(env.unwrapped.max_steps):
                _, _, terminated, truncated, info = env.step(task.expert_action(env))
                if terminated or truncated:
                    break
            assert info["success"] == is_solvable(values, env.unwrapped.target, env.unwrapped.operators)


def test_the_expert_continues_after_blanks_only_where_the_formula_still_fits():
    task = get_task("ezpoints")
    env = dealt("ezpoints", "rl4vlm", ["3", "4"])
    press(env, ["5", "5"])  # two blanks: 3*4 still fits in five elements
    for _ in range(4):
        _, reward, terminated, _, info = env.step(task.expert_action(env))
    assert (reward, terminated, info["success"]) == (10, True, True)

    env = dealt("ezpoints", "rl4vlm", ["3", "4"])
    press(env, ["5", "5", "5"])  # three blanks: no formula fits, so the expert ends now (-1 whatever it does)
    assert env.action_names[task.expert_action(env)] == "="


@pytest.mark.parametrize("name", list(TASKS))
def test_the_expert_reaches_the_ceiling_under_the_original_rules(name):
    """`vlmrl eval --agent expert` under rules=rl4vlm: every deal where the ceiling is 1, else a success
    count that the exact ceiling explains (two-sided binomial test, p > 0.01)."""
    from vlmrl.evaluation.agents import make_agent
    from vlmrl.evaluation.evaluate import evaluate

    task = get_task(name)
    result = evaluate(make_agent("expert", task), episodes=600, seed=0, env_kwargs={"rules": "rl4vlm"})
    assert result.ceiling == float(task.ceiling())
    if task.ceiling() == 1:
        assert result.success_rate == 1.0
    else:
        successes = round(result.success_rate * result.episodes)
        assert binomtest(successes, result.episodes, result.ceiling).pvalue > 0.01


# -- Choosing the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(TASKS))
def test_an_unknown_rule_set_is_one_line_naming_both(name):
    with pytest.raises(ValueError, match="rules must be 'vlmrl' or 'rl4vlm', not 'paper'"):
        make_env(name, rules="paper")
    with pytest.raises(UsageError, match=re.escape(f"env_kwargs {{'rules': 'paper'}} does not suit {name}: rules")):
        check_env_kwargs(name, "env_kwargs", {"rules": "paper"})
    assert game(name, "vlmrl").rules == "vlmrl" and make_env(name).unwrapped.rules == "vlmrl"


def test_every_command_plays_the_rule_set_its_env_kwargs_name(capsys, tmp_path):
    """eval, play and bench env take --env-kwargs; train and sft take env_kwargs (their rollouts and
    demonstrations are built with it); the paper presets name the original's rules."""
    import json

    from vlmrl.cli import main
    from vlmrl.recipes.config import load_config, load_sft_config
    from vlmrl.recipes.rollout import Rollouts
    from vlmrl.recipes.sft import collect_demonstrations

    lengths = {}
    for rules in RULES:
        argv = ["eval", "--env", "ezpoints", "--agent", "random", "--episodes", "100", "--json"]
        assert main([*argv, "--env-kwargs", f"{{rules: {rules}}}"]) == 0
        result = json.loads(capsys.readouterr().out)
        assert result["env_kwargs"] == {"rules": rules}
        lengths[rules] = result["mean_length"]
    assert lengths["rl4vlm"] <= 7 < lengths["vlmrl"]

    gif = tmp_path / "episode.gif"
    argv = ["play", "--env", "points24", "--seed", "3", "--out", str(gif), "--env-kwargs", "{rules: rl4vlm}"]
    assert main(argv) == 0 and gif.stat().st_size > 0
    capsys.readouterr()
    argv = ["bench", "env", "--env", "blackjack", "--steps", "20", "--json", "--env-kwargs", "{rules: rl4vlm}"]
    assert main(argv) == 0
    assert json.loads(capsys.readouterr().out)["env_kwargs"] == {"rules": "rl4vlm"}
    assert main(["eval", "--env", "numberline", "--env-kwargs", "{rules: paper}"]) == 2
    assert "rules must be 'vlmrl' or 'rl4vlm', not 'paper'" in capsys.readouterr().err

    config = load_config(env="ezpoints", overrides=["env_kwargs={rules: rl4vlm}"])
    assert config.heldout_env_kwargs == {"rules": "rl4vlm"}
    rollouts = Rollouts(get_task("ezpoints"), 2, seed=0, env_kwargs=config.env_kwargs)
    assert [env.unwrapped.rules for env in rollouts.envs] == ["rl4vlm", "rl4vlm"]
    with pytest.raises(UsageError, match=re.escape("env_kwargs {'rules': 'RL4VLM'} does not suit ezpoints: rules")):
        load_config(env="ezpoints", overrides=["env_kwargs={rules: RL4VLM}"])

    sft = load_sft_config(env="ezpoints", overrides=["env_kwargs={rules: rl4vlm}"])
    task = get_task("ezpoints")
    images = {
        rules: [d.image for d in collect_demonstrations(task, "expert", 1, 7, env_kwargs={"rules": rules})]
        for rules in RULES
    }
    assert sft.env_kwargs == {"rules": "rl4vlm"}
    assert len({image.tobytes() for image in images["rl4vlm"]}) == len(images["rl4vlm"])  # the formula grows
    assert len({image.tobytes() for image in images["vlmrl"]}) == 1  # the same cards every step

    for game in TASKS:
        paper = load_config(f"paper/{game}-llava-7b")
        assert paper.env_kwargs == {"rules": "rl4vlm"} and paper.heldout_env_kwargs == {"rules": "rl4vlm"}
        assert load_config(env=game).env_kwargs is None  # the CPU presets: vlmrl's rules
