"""Supervised warm-up: demonstrations are right about the image, SFT learns them, PPO starts from it."""

from __future__ import annotations

import json

import pytest
import torch

from vlmrl.cli import main
from vlmrl.games import get_task, make_env
from vlmrl.policy import load_policy
from vlmrl.recipes.config import load_sft_config
from vlmrl.recipes.ppo import setup
from vlmrl.recipes.sft import answer_loss, check_answers, collect_demonstrations

GAMES = ["numberline", "ezpoints", "points24", "blackjack"]


@pytest.mark.parametrize("game", GAMES)
@pytest.mark.parametrize("behaviour", ["random", "expert", "epsilon"])
def test_demonstrations_parse_to_the_behaviour_action_and_describe_the_image(game, behaviour):
    task = get_task(game)
    demonstrations = collect_demonstrations(task, behaviour, episodes=6, seed=3)
    replay = make_env(game)
    for demo in demonstrations:
        assert task.parse(demo.answer).action == demo.action
        answer = json.loads(demo.answer)
        for key, value in demo.truth.items():
            assert answer[key] == value
    # the truth is the image's: replaying the same seeds and actions shows the same state
    first = [d for d in demonstrations if d.episode == 0]
    observation, _ = replay.reset(seed=3)
    for demo in first:
        assert (observation == demo.image).all()
        observation, *_ = replay.step(demo.action)


class Scripted:
    """A stand-in policy whose greedy answers are given: what check_answers scores is then known."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    def generate(self, images, prompts, **sampling):
        return [type("Sample", (), {"text": text}) for text in self.answers]


def test_the_answer_check_tells_a_wrong_reading_from_a_wrong_decision():
    task = get_task("ezpoints")
    demos = collect_demonstrations(task, "expert", episodes=2, seed=1)[:4]
    wrong_card = dict(json.loads(demos[1].answer), cards=[99, 99])
    other = next(a for a in task.action_names if a != task.action_names[demos[2].action])
    wrong_action = dict(json.loads(demos[2].answer), action=other)
    answers = [demos[0].answer, json.dumps(wrong_card), json.dumps(wrong_action), "no answer"]
    scores = check_answers(Scripted(answers), task, demos, max_new_tokens=8)
    assert scores["sft/valid_rate"] == 3 / 4 and scores["sft/action_agreement"] == 2 / 4
    assert scores["sft/field_accuracy"] == 5 / 8  # two fields per answer: the cards and the formula
    assert scores["sft/read_all_fields"] == 2 / 4  # the first and the third read everything right
    assert scores["sft/action_agreement_when_read"] == 1 / 2  # of those, the third chose another element
    blackjack = get_task("blackjack")
    hands = collect_demonstrations(blackjack, "expert", episodes=2, seed=1, cot=False)
    no_fields = check_answers(Scripted([d.answer for d in hands]), blackjack, hands, max_new_tokens=8)
    assert no_fields == {"sft/valid_rate": 1.0, "sft/action_agreement": 1.0}  # nothing to read: no perception keys


def test_random_demonstrations_take_non_expert_actions_but_expert_ones_never_do():
    task = get_task("numberline")
    expert = collect_demonstrations(task, "expert", episodes=20, seed=0)
    random_play = collect_demonstrations(task, "random", episodes=20, seed=0)
    env = make_env("numberline")
    for demos, expect_all in ((expert, True), (random_play, False)):
        agreements = []
        for demo in demos:
            env.reset()
            env.unwrapped.current, env.unwrapped.target = demo.truth["current number"], demo.truth["target number"]
            agreements.append(task.expert_action(env) == demo.action)
        assert all(agreements) if expect_all else 0.2 < sum(agreements) / len(agreements) < 0.8


@pytest.mark.parametrize(("behaviour", "argued"), [("random", {False}), ("expert", {True}), ("epsilon", {True, False})])
def test_only_the_experts_choices_come_with_its_argument(behaviour, argued):
    """A random draw that happens to match the expert must not carry the expert's argument,
    or SFT would learn the decision from the wording."""
    task = get_task("numberline")
    demonstrations = collect_demonstrations(task, behaviour, episodes=30, seed=1, epsilon=0.5)
    found = {"so I should" in json.loads(demo.answer)["thoughts"] for demo in demonstrations}
    assert found == argued
    assert all(("I choose" in json.loads(d.answer)["thoughts"]) != ("so I should" in d.answer) for d in demonstrations)


def test_sft_drives_the_answer_loss_down(tiny_llava):
    torch.manual_seed(0)
    policy = load_policy(tiny_llava, trainable="all")
    demonstrations = collect_demonstrations(get_task("numberline"), "expert", episodes=2, seed=0)[:4]
    optimizer = torch.optim.Adam([p for p in policy.parameters() if p.requires_grad], lr=3e-3)
    with torch.no_grad():
        before = float(answer_loss(policy, demonstrations))
    for _ in range(25):
        loss = answer_loss(policy, demonstrations)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    with torch.no_grad():
        after = float(answer_loss(policy, demonstrations))
    assert after < 0.4 * before, (before, after)


def test_train_init_starts_from_the_sft_weights(tiny_llava, tmp_path, capsys):
    code = main(
        [
            "sft",
            "--env",
            "numberline",
            "--episodes",
            "4",
            f"model={tiny_llava}",
            f"out={tmp_path / 'sft'}",
            "epochs=1",
            "lr=1e-2",
            "eval_examples=2",
            "max_new_tokens=8",
            "tensorboard=false",
        ]
    )
    assert code == 0 and "model written" in capsys.readouterr().out
    from vlmrl.recipes.config import load_config

    config = load_config(
        env="numberline",
        overrides=[
            f"init={tmp_path / 'sft'}",
            f"model={tiny_llava}",
            "lora=true",
            "lora_rank=4",
            "lora_alpha=8",
            f"out={tmp_path / 'rl'}",
        ],
    )
    run = setup(config)
    sft_model = load_policy(tmp_path / "sft" / "model").eval()
    original = load_policy(tiny_llava).eval()
    torch.manual_seed(0)
    images = [make_env("numberline").reset(seed=0)[0]]
    prompts = [get_task("numberline").prompt({})]
    samples = sft_model.generate(images, prompts, temperature=1.0, max_new_tokens=8)
    with torch.no_grad():
        started = run.policy.eval().score(samples).token_logprobs
        merged = sft_model.score(samples).token_logprobs
        untrained = original.score(samples).token_logprobs
    assert torch.allclose(started, merged, atol=1e-5)
    assert not torch.allclose(started, untrained, atol=1e-3)


def test_sft_config_errors_are_one_line():
    from vlmrl.infra.errors import UsageError

    with pytest.raises(UsageError, match="behaviour must be one of expert, random, epsilon"):
        load_sft_config(env="numberline", overrides=["behaviour=teacher"])
    with pytest.raises(UsageError, match="unknown key 'steps'"):
        load_sft_config(env="numberline", overrides=["steps=3"])
