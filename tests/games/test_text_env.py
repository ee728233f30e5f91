"""Stepping with answer text: what an invalid answer becomes, and how it is counted."""

import numpy as np
import pytest

from vlmrl.games import TextActionWrapper, get_task, make_env


def wrapped(name: str, **kwargs) -> TextActionWrapper:
    return TextActionWrapper(make_env(name), get_task(name), **kwargs)


def test_a_valid_answer_steps_the_game_with_its_action():
    env = wrapped("numberline")
    _, info = env.reset(seed=3)
    target, current = info["target"], info["current"]
    name = "+" if current < target else "-"
    _, _, _, _, info = env.step(f'{{"thoughts": "...", "action": "{name}"}}')
    assert info["invalid"] is False and info["action"] == get_task("numberline").action_names.index(name)
    assert abs(info["current"] - current) == 1
    assert env.invalid_rate == 0.0


def test_random_fallback_is_a_uniform_legal_action_and_reproducible():
    env = wrapped("points24")
    actions = []
    for seed in range(400):
        env.reset(seed=seed)
        _, _, _, _, info = env.step("I am not sure.")
        assert info["invalid"] is True and "action" in info["parse_reason"]
        actions.append(info["action"])
    counts = np.bincount(actions, minlength=17)
    assert (counts > 0).all(), counts  # every legal action is drawn
    again = []
    for seed in range(400):
        env.reset(seed=seed)
        again.append(env.step("garbage")[4]["action"])
    assert actions == again
    assert env.invalid_rate == 1.0


def test_random_fallback_does_not_disturb_the_deal_stream():
    """The same seed deals the same cards after an invalid answer as after a valid one."""
    a, b = wrapped("blackjack"), wrapped("blackjack")
    a.reset(seed=11)
    b.reset(seed=11)
    info_a = a.step("nonsense")[4]
    info_b = b.step(f'{{"action": "{get_task("blackjack").action_names[info_a["action"]]}"}}')[4]
    assert {k: v for k, v in info_a.items() if k not in ("invalid", "parse_reason")} == {
        k: v for k, v in info_b.items() if k not in ("invalid", "parse_reason")
    }


def test_penalty_mode_leaves_the_game_as_it_was_and_charges_the_penalty():
    env = wrapped("numberline", invalid_action="penalty", invalid_penalty=-2.5)
    obs, info = env.reset(seed=4)
    next_obs, reward, terminated, truncated, next_info = env.step("???")
    assert reward == -2.5 and not terminated and not truncated
    assert np.array_equal(obs, next_obs) and next_info["current"] == info["current"]
    assert next_info["invalid"] is True and next_info["action"] is None


def test_penalty_mode_still_ends_episodes():
    env = wrapped("numberline", invalid_action="penalty")
    env.reset(seed=0)
    for step in range(1, 11):
        _, _, terminated, truncated, info = env.step("")
        assert truncated == (step == 10) and not terminated
    assert info["success"] is False


def test_counts_invalid_answers_across_episodes():
    env = wrapped("numberline")
    env.reset(seed=1)
    env.step('{"action": "+"}')
    env.step("no idea")
    assert (env.steps, env.invalid_steps, env.invalid_rate) == (2, 1, 0.5)


def test_rejects_an_unknown_invalid_action_rule():
    with pytest.raises(ValueError, match="invalid_action must be one of"):
        wrapped("numberline", invalid_action="ignore")
