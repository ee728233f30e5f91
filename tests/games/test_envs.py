"""What every game promises as a gymnasium environment: the API, images, seeding, `success`."""

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from vlmrl.games import TASKS, get_task, make_env
from vlmrl.infra.errors import UsageError

GAMES = list(TASKS)
IDS = ["vlmrl/NumberLine-v0", "vlmrl/EZPoints-v0", "vlmrl/Points24-v0", "vlmrl/Blackjack-v0"]


@pytest.mark.parametrize("env_id", IDS)
def test_passes_gymnasiums_env_checker(env_id):
    env = gym.make(env_id, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)


def test_registered_ids_match_the_tasks():
    assert [get_task(name).env_id for name in GAMES] == IDS


@pytest.mark.parametrize("name", GAMES)
def test_observations_are_300x300_rgb_uint8(name):
    env = make_env(name)
    obs, _ = env.reset(seed=1)
    assert obs.shape == (300, 300, 3) and obs.dtype == np.uint8
    assert len(np.unique(obs.reshape(-1, 3), axis=0)) > 2, "the image must show something"


def rollout(name: str, seed: int, steps: int = 12):
    """Observations, rewards and infos of a fixed action sequence from the deal of `seed`."""
    env = make_env(name)
    obs, info = env.reset(seed=seed)
    trace = [(obs, None, info)]
    n = env.action_space.n
    for t in range(steps):
        obs, reward, terminated, truncated, info = env.step((3 * t + 1) % n)
        trace.append((obs, reward, info))
        if terminated or truncated:
            obs, info = env.reset()
            trace.append((obs, None, info))
    return trace


def same(a, b) -> bool:
    return all(
        np.array_equal(x[0], y[0]) and x[1] == y[1] and x[2] == y[2] for x, y in zip(a, b, strict=False)
    ) and len(a) == len(b)


@pytest.mark.parametrize("name", GAMES)
def test_same_seed_same_episode_including_later_resets(name):
    assert same(rollout(name, 123), rollout(name, 123))


@pytest.mark.parametrize("name", GAMES)
def test_different_seeds_deal_different_episodes(name):
    firsts = {rollout(name, seed, steps=0)[0][0].tobytes() for seed in range(20)}
    assert len(firsts) > 5


@pytest.mark.parametrize("name", GAMES)
def test_success_is_reported_exactly_when_an_episode_ends(name):
    env = make_env(name)
    rng = np.random.default_rng(0)
    episodes = 0
    _, info = env.reset(seed=5)
    assert "success" not in info
    while episodes < 30:
        _, _, terminated, truncated, info = env.step(int(rng.integers(env.action_space.n)))
        assert ("success" in info) == (terminated or truncated)
        if terminated or truncated:
            assert isinstance(info["success"], bool)
            episodes += 1
            _, info = env.reset()


def test_unknown_game_names_the_known_ones():
    with pytest.raises(
        UsageError, match="unknown game 'chess'; known games: numberline, ezpoints, points24, blackjack"
    ):
        get_task("chess")
    assert get_task(" NumberLine ").name == "numberline"


def test_games_do_not_import_torch():
    import subprocess
    import sys

    code = "import sys, vlmrl.games, vlmrl.cli; print('torch' in sys.modules or 'transformers' in sys.modules)"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )
