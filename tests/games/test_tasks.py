"""Each game's text interface: prompts, the expert's answers, and the expert at the ceiling."""

import json

import pytest

from vlmrl.evaluation.evaluate import wilson_interval
from vlmrl.games import TASKS, get_task, make_env
from vlmrl.games.formula import is_solvable

GAMES = list(TASKS)
PROMPT_FIELDS = {
    "numberline": ["current number", "target number", "thoughts", "action"],
    "ezpoints": ["cards", "current formula", "thoughts", "action"],
    "points24": ["cards", "current formula", "thoughts", "action"],
    "blackjack": ["thoughts", "action"],
}


def expert_episodes(name: str, seeds):
    """Yield (env, task, answer text, expert action) at every step of expert-played episodes."""
    task, env = get_task(name), make_env(name)
    for seed in seeds:
        env.reset(seed=seed)
        while True:
            action, text = task.expert(env)
            yield env, task, text, action
            _, _, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break


@pytest.mark.parametrize("name", GAMES)
def test_prompt_asks_for_the_reference_fields_in_order(name):
    task, env = get_task(name), make_env(name)
    _, info = env.reset(seed=0)
    template = task.prompt(info).splitlines()[-1]
    positions = [template.index(f'"{field}"') for field in PROMPT_FIELDS[name]]
    assert positions == sorted(positions)
    for action in task.action_names:
        assert f'"{action}"' in template
    assert "JSON" in task.prompt(info)


@pytest.mark.parametrize("name", GAMES)
def test_action_only_prompt_asks_for_the_action_alone(name):
    task, env = get_task(name), make_env(name)
    _, info = env.reset(seed=0)
    template = task.prompt(info, cot=False).splitlines()[-1]
    assert '"action"' in template and '"thoughts"' not in template


@pytest.mark.parametrize("name", GAMES)
def test_expert_answer_parses_back_to_the_expert_action(name):
    steps = 0
    for _, task, text, action in expert_episodes(name, range(60)):
        parsed = task.parse(text)
        assert parsed.valid and parsed.action == action, text
        assert list(json.loads(text)) == PROMPT_FIELDS[name]
        steps += 1
    assert steps >= 60


@pytest.mark.parametrize("name", GAMES)
def test_answers_for_any_action_parse_back_and_describe_the_image(name):
    task, env = get_task(name), make_env(name)
    for seed in range(20):
        env.reset(seed=seed)
        game = env.unwrapped
        for action in range(len(task.action_names)):
            answer = json.loads(task.answer(env, action))
            assert task.parse(json.dumps(answer)).action == action
            if name == "numberline":
                assert (answer["current number"], answer["target number"]) == (game.current, game.target)
            elif name in ("ezpoints", "points24"):
                assert answer["cards"] == [card.value for card in game.cards]
                assert answer["current formula"] == "".join(game.formula)
            else:
                assert all(card.rank in answer["thoughts"] for card in game.player)


def test_expert_solves_every_solvable_points24_deal_and_only_those():
    env, task = make_env("points24"), get_task("points24")
    for seed in range(150):
        env.reset(seed=seed)
        solvable = is_solvable(env.unwrapped.values, 24)
        while True:
            _, _, terminated, truncated, info = env.step(task.expert_action(env))
            if terminated or truncated:
                break
        assert info["success"] == solvable


@pytest.mark.parametrize(
    "name,episodes", [("numberline", 300), ("ezpoints", 300), ("points24", 400), ("blackjack", 2000)]
)
def test_expert_success_is_consistent_with_the_ceiling(name, episodes):
    env, task = make_env(name), get_task(name)
    wins = 0
    for seed in range(10_000, 10_000 + episodes):
        env.reset(seed=seed)
        while True:
            _, _, terminated, truncated, info = env.step(task.expert_action(env))
            if terminated or truncated:
                wins += info["success"]
                break
    low, high = wilson_interval(wins, episodes, z=3.29)  # 99.9%
    assert low <= float(task.ceiling()) <= high


def test_expert_completes_a_formula_someone_else_started():
    env, task = make_env("points24"), get_task("points24")
    env.reset(seed=0)
    game = env.unwrapped
    game.cards = [game.cards[0].__class__(r, "clubs") for r in ("3", "3", "8", "8")]
    game.remaining, game.formula = game.values, []
    for name in ["8", "/"]:
        env.step(task.action_names.index(name))
    while True:
        _, _, terminated, truncated, info = env.step(task.expert_action(env))
        if terminated or truncated:
            break
    assert info["success"] and info["formula"] == "8/(3-8/3)"


def test_expert_ends_a_formula_that_cannot_be_completed():
    env, task = make_env("ezpoints"), get_task("ezpoints")
    env.reset(seed=0)
    env.step(task.action_names.index("+"))
    action, text = task.expert(env)
    assert task.action_names[action] == "=" and "cannot be completed" in text
