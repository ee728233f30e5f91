"""The one episode loop: seeds dealt as episodes end, totals kept, idle environments, final transitions."""

from __future__ import annotations

import gymnasium as gym
import pytest

from vlmrl.evaluation.episodes import Lockstep, Track


class Countdown(gym.Env):
    """An episode of `seed % 3 + 1` steps; reward = the action; invalid when the action is negative."""

    observation_space = gym.spaces.Discrete(100)
    action_space = gym.spaces.Discrete(10)

    def reset(self, *, seed=None, options=None):
        self.seed_, self.left = seed, seed % 3 + 1
        return self.left, {"seed": seed}

    def step(self, action):
        self.left -= 1
        info = {"seed": self.seed_, "invalid": action < 0, "success": action == 7}
        return self.left, float(action), self.left == 0 and action != 9, self.left == 0 and action == 9, info


def test_each_environment_plays_its_seeds_and_goes_idle_when_they_run_out():
    games = Lockstep([Countdown(), Countdown()], [[0, 1], [2]])  # lengths 1, 2 and 3
    lengths: dict[int, list[int]] = {0: [], 1: []}
    while games.active:
        for step in games.step([7] * len(games.active)):
            if step.episode is not None:
                lengths[step.index].append(step.episode.length)
    assert lengths == {0: [1, 2], 1: [3]}
    assert games.states() == []


def test_a_shared_seed_stream_is_drawn_in_the_order_episodes_end():
    stream = iter(range(100))
    draws: list[int] = []

    def seeds():
        while True:
            draws.append(next(stream))
            yield draws[-1]

    games = Lockstep([Countdown() for _ in range(3)], [seeds() for _ in range(3)])
    assert [track.seed for track in games.tracks] == [0, 1, 2]
    games.step([7, 7, 7])  # seed 0 (one step) ends: environment 0 gets the next seed, 3
    assert [track.seed for track in games.tracks] == [3, 1, 2]
    games.step([7, 7, 7])  # seed 3 (one step) and seed 1 (two steps) end, in environment order
    assert [track.seed for track in games.tracks] == [4, 5, 2] and draws == [0, 1, 2, 3, 4, 5]


def test_totals_actions_and_the_final_transition_of_an_episode():
    games = Lockstep([Countdown()], [[2, 3]])
    first = games.step([-1])[0]
    assert first.episode is None and first.invalid and first.next_info == games.states()[0][1]
    assert games.tracks[0] == Track(seed=2, actions=[-1], ret=-1.0, invalid=1)
    games.step([4])
    last = games.step([9])[0]  # the third step of seed 2 ends it, truncated
    assert (last.terminated, last.truncated, last.next_observation) == (False, True, 0)
    assert (last.episode.ret, last.episode.length, last.episode.invalid, last.episode.success) == (12.0, 3, 1, False)
    assert games.tracks[0] == Track(seed=3) and games.states() == [(1, {"seed": 3})]  # the next deal began


def test_the_number_of_answers_must_match_the_active_environments():
    games = Lockstep([Countdown(), Countdown()], [[0], [0]])
    with pytest.raises(ValueError, match="1 answers for 2 active environments"):
        games.step([7])
    with pytest.raises(ValueError, match="2 environments but 1 seed sources"):
        Lockstep([Countdown(), Countdown()], [[0]])


def test_restore_puts_an_environment_back_mid_episode():
    env = Countdown()
    games = Lockstep([env], [[4, 6]])
    env.reset(seed=4)
    observation, *_ = env.step(7)  # replayed: one step of seed 4's two
    games.restore(0, Track(seed=4, actions=[7], ret=7.0), observation, {"seed": 4})
    ended = games.step([7])[0]
    assert ended.episode is not None and (ended.episode.length, ended.episode.ret) == (2, 14.0)
    assert games.tracks[0] == Track(seed=6)
