"""Rollouts on their own: a scripted policy on NumberLine, so every value, bootstrap and replay is known.

The scripted policy answers by a rule that reads the state being answered (steering away from the
target makes episodes run to truncation, towards it makes them terminate), writes unparseable text
on a schedule (the wrapper's random fallback then acts), and gives every sample and every
bootstrap call a distinct value, so where each value lands in the buffer can be checked exactly.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vlmrl.games import get_task
from vlmrl.games.parsing import format_answer
from vlmrl.policy.policy import Sample
from vlmrl.recipes.rollout import Rollouts

TASK = get_task("numberline")


class ScriptedPolicy:
    """`generate` and `values` as `Rollouts.collect` calls them, answering by `decide(info, step)`."""

    sharded = False

    def __init__(self, rollouts: Rollouts, decide) -> None:
        self.rollouts, self.decide = rollouts, decide
        self.calls = 0  # generate calls so far
        self.bootstraps: list[tuple[float, str]] = []  # (value given, prompt it was asked about)

    def generate(self, images, prompts, temperature, top_p, max_new_tokens) -> list[Sample]:
        assert prompts == self.rollouts.prompts()  # it is asked about the environments' current states
        samples = []
        for i, (image, (_, info)) in enumerate(zip(images, self.rollouts.current, strict=True)):
            action = self.decide(info, self.calls)
            text = "no answer" if action is None else format_answer({"action": action})
            value = float(10 * self.calls + i)  # distinct: step and environment can be read back from it
            empty = torch.zeros(0)
            samples.append(Sample(image, empty.long(), empty.long(), text, empty, value, 0, temperature))
        self.calls += 1
        return samples

    def values(self, images, prompts) -> torch.Tensor:
        out = []
        for prompt in prompts:
            value = -1000.0 - len(self.bootstraps)
            self.bootstraps.append((value, prompt))
            out.append(value)
        return torch.tensor(out)


def away(info, call):
    """The action moving away from the target: episodes end only by truncation (10 steps)."""
    return "-" if info["current"] < info["target"] else "+"


def towards_with_garbage(info, call):
    """Towards the target, but every third step an unparseable answer (a random action then)."""
    if call % 3 == 2:
        return None
    return "+" if info["current"] < info["target"] else "-"


def collect(seed: int, decide, steps: int, num_envs: int = 3, env_workers: int = 0):
    rollouts = Rollouts(TASK, num_envs, seed=seed, env_workers=env_workers)
    policy = ScriptedPolicy(rollouts, decide)
    buffer, finished = rollouts.collect(policy, steps, temperature=1.0, top_p=1.0, max_new_tokens=8)
    return rollouts, policy, buffer, finished


def test_truncated_episodes_bootstrap_from_their_own_last_observation():
    _, policy, buffer, finished = collect(seed=3, decide=away, steps=23)
    steps, n = buffer.rewards.shape
    assert len(finished) == 2 * n and all(not e.success and e.length == 10 for e in finished)
    assert buffer.truncated.sum() == 2 * n and not buffer.terminated.any()
    bootstrap_of = dict(policy.bootstraps)
    for t in range(steps):
        for i in range(n):
            value = float(buffer.next_values[t, i])
            if buffer.truncated[t, i]:
                assert value in bootstrap_of, (t, i)  # never the next episode's first value
            elif t + 1 < steps:
                assert value == float(buffer.values[t + 1, i]) == 10 * (t + 1) + i
    # the last bootstrap call values the environments' current states, in order
    assert [float(v) for v in buffer.next_values[-1]] == [v for v, _ in policy.bootstraps[-n:]]


def test_a_truncated_episode_is_valued_under_the_prompt_of_its_final_state():
    """The bootstrap is asked about the observation the episode ended in, not the new deal."""
    rollouts = Rollouts(TASK, 1, seed=5)
    finals = []
    original_step = rollouts.envs[0].step

    def step(text):
        result = original_step(text)
        if result[3]:
            finals.append(TASK.prompt(result[4]))
        return result

    rollouts.envs[0].step = step
    policy = ScriptedPolicy(rollouts, away)
    buffer, _ = rollouts.collect(policy, 12, temperature=1.0, top_p=1.0, max_new_tokens=8)
    (t,) = torch.nonzero(buffer.truncated[:, 0]).flatten().tolist()
    value = float(buffer.next_values[t, 0])
    assert (value, finals[0]) in policy.bootstraps


def test_terminated_episodes_bootstrap_nothing_and_values_never_cross_a_boundary():
    _, _, buffer, finished = collect(seed=11, decide=towards_with_garbage, steps=30)
    steps, n = buffer.rewards.shape
    assert buffer.terminated.sum() >= n and buffer.invalid.sum() == 10 * n
    assert any(e.success for e in finished) and all(e.invalid <= e.length for e in finished)
    for t in range(steps):
        for i in range(n):
            if buffer.terminated[t, i]:
                assert float(buffer.next_values[t, i]) == 0.0
                assert float(buffer.rewards[t, i]) == 1.0
            elif not buffer.truncated[t, i] and t + 1 < steps:
                assert float(buffer.next_values[t, i]) == float(buffer.values[t + 1, i])
    # a sample's value is the one generate gave for that step and environment
    assert [[float(v) for v in row] for row in buffer.values] == [
        [10.0 * t + i for i in range(n)] for t in range(steps)
    ]


@pytest.mark.parametrize("steps_before", [1, 7, 16])
def test_replay_on_resume_reproduces_every_environment_and_what_follows(steps_before):
    rollouts, _, _, _ = collect(seed=2, decide=towards_with_garbage, steps=steps_before, num_envs=4)
    state = rollouts.state_dict()
    resumed = Rollouts(TASK, 4, seed=999)  # another seed: everything must come from the state
    resumed.load_state_dict(state)
    for (obs, info), (obs2, info2) in zip(rollouts.current, resumed.current, strict=True):
        assert np.array_equal(obs, obs2) and info == info2
    for env, env2 in zip(rollouts.envs, resumed.envs, strict=True):
        assert (env.steps, env.invalid_steps, env.episode_steps) == (env2.steps, env2.invalid_steps, env2.episode_steps)
    assert resumed.state_dict() == state

    # both continue alike: the same rewards, ends, invalid answers, bootstraps and finished episodes
    continued = []
    for r in (rollouts, resumed):
        policy = ScriptedPolicy(r, towards_with_garbage)
        policy.calls = steps_before
        buffer, finished = r.collect(policy, 9, temperature=1.0, top_p=1.0, max_new_tokens=8)
        tensors = (buffer.rewards, buffer.terminated, buffer.truncated, buffer.invalid, buffer.next_values)
        continued.append((tensors, [(e.success, e.ret, e.length, e.invalid) for e in finished]))
    (tensors, episodes), (tensors2, episodes2) = continued
    assert all(torch.equal(a, b) for a, b in zip(tensors, tensors2, strict=True))
    assert episodes == episodes2 and len(episodes) > 0


def buffer_contents(buffer, finished) -> tuple:
    tensors = (buffer.rewards, buffer.values, buffer.next_values, buffer.terminated, buffer.truncated, buffer.invalid)
    episodes = [(e.success, e.ret, e.length, e.invalid) for e in finished]
    return [t.tolist() for t in tensors], buffer.actions, [s.text for s in buffer.samples], episodes


def test_worker_processes_step_the_environments_with_identical_results():
    """env_workers: the same rewards, ends, random fallback actions (their generator lives with the
    environment, in the worker), bootstraps, finished episodes and saved state as in-process stepping;
    a state saved by one resumes in the other, and both continue alike."""
    here, policy_here, buffer_here, finished_here = collect(seed=4, decide=towards_with_garbage, steps=25, num_envs=5)
    there, policy_there, buffer_there, finished_there = collect(
        seed=4, decide=towards_with_garbage, steps=25, num_envs=5, env_workers=2
    )
    try:
        assert buffer_contents(buffer_here, finished_here) == buffer_contents(buffer_there, finished_there)
        assert policy_here.bootstraps == policy_there.bootstraps and len(finished_here) > 5
        assert buffer_here.invalid.any() and there.state_dict() == here.state_dict()
        resumed = Rollouts(TASK, 5, seed=999, env_workers=3)  # another seed, another split over the workers
        try:
            resumed.load_state_dict(here.state_dict())
            continued = []
            for r in (here, resumed):
                policy = ScriptedPolicy(r, towards_with_garbage)
                policy.calls = 25
                continued.append(buffer_contents(*r.collect(policy, 7, temperature=1.0, top_p=1.0, max_new_tokens=8)))
            assert continued[0] == continued[1]
        finally:
            resumed.close()
    finally:
        there.close()


def test_a_saved_state_that_cannot_replay_is_the_same_error_with_workers():
    rollouts, *_ = collect(seed=2, decide=towards_with_garbage, steps=3, num_envs=2)
    state = rollouts.state_dict()
    state["tracks"][1]["actions"][0] = 7  # NumberLine offers 2 actions
    there = Rollouts(TASK, 2, seed=0, env_workers=2)
    try:
        for target in (rollouts, there):
            with pytest.raises(ValueError, match="environment 1's action 0 has id 7, but its state offers 2 actions"):
                target.check_state(state)
    finally:
        there.close()


class CoinPolicy:
    """`generate` as `Rollouts.collect_groups` calls it: "+" or "-" at random (a seeded coin), or now
    and then an unparseable answer; a group's episodes then share their deal but not their play."""

    sharded = False

    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)
        self.prompts_seen: list[str] = []

    def generate(self, images, prompts, temperature, top_p, max_new_tokens) -> list[Sample]:
        self.prompts_seen.extend(prompts)
        empty = torch.zeros(0)
        samples = []
        for image in images:
            draw = self.rng.random()
            text = "no answer" if draw < 0.1 else format_answer({"action": "+" if draw < 0.55 else "-"})
            samples.append(Sample(image, empty.long(), empty.long(), text, empty, 0.0, 0, temperature))
        return samples


@pytest.mark.parametrize("group_size", [2, 3])
def test_group_rounds_deal_each_seed_to_its_group_and_hold_whole_episodes(group_size):
    rollouts = Rollouts(TASK, 6, seed=5)
    buffer, finished = rollouts.collect_groups(CoinPolicy(0), 25, group_size, 1.0, 1.0, 8)
    episodes = buffer.episode.unique()
    assert buffer.steps_all_ranks == len(buffer.samples) >= 25
    assert len(finished) == len(episodes) and len(episodes) % 6 == 0  # whole rounds of 6 environments
    # every episode is whole: its rewards add up to one finished episode's return, its steps to its length
    totals = sorted(
        (float(buffer.rewards[buffer.episode == e].sum()), int((buffer.episode == e).sum())) for e in episodes
    )
    assert totals == sorted((e.ret, e.length) for e in finished)
    for g in buffer.group.unique():
        members = buffer.episode[buffer.group == g].unique()
        assert len(members) == group_size
        firsts = [int(torch.nonzero(buffer.episode == e)[0]) for e in members]
        assert len({buffer.state[k].item() for k in firsts}) == 1  # same deal: the same first state
        assert all(np.array_equal(buffer.samples[k].image, buffer.samples[firsts[0]].image) for k in firsts)
    # different groups of a round are dealt different seeds (a clash of two 2^30 draws is negligible)
    first_images = {
        buffer.samples[int(torch.nonzero(buffer.group == g)[0])].image.tobytes() for g in buffer.group.unique()
    }
    assert len(first_images) > 1
    assert len(buffer.actions) == len(buffer.samples) and None in buffer.actions and "+" in buffer.actions


def test_state_keys_name_what_a_step_saw():
    from vlmrl.recipes.rollout import state_key

    image = np.zeros((4, 4, 3), dtype=np.uint8)
    other = image.copy()
    other[0, 0, 0] = 1
    assert state_key(image, "p") == state_key(image.copy(), "p")
    assert len({state_key(image, "p"), state_key(other, "p"), state_key(image, "q")}) == 3
    assert 0 <= state_key(image, "p") < 2**63


def test_group_rounds_resume_from_the_saved_group_stream():
    first = Rollouts(TASK, 4, seed=1)
    first.collect_groups(CoinPolicy(0), 8, 2, 1.0, 1.0, 8)
    saved = first.state_dict()
    expected, _ = first.collect_groups(CoinPolicy(1), 8, 2, 1.0, 1.0, 8)
    again = Rollouts(TASK, 4, seed=1)
    again.load_state_dict(saved)
    got, _ = again.collect_groups(CoinPolicy(1), 8, 2, 1.0, 1.0, 8)
    assert torch.equal(got.rewards, expected.rewards) and torch.equal(got.state, expected.state)
