from vlmrl.games.numberline import NumberLineEnv

MINUS, PLUS = 0, 1


def at(make_game, current: int, target: int) -> NumberLineEnv:
    env = make_game("numberline")
    env.current, env.target = current, target
    return env


def test_reaching_the_target_pays_one_and_terminates_with_success(make_game):
    env = at(make_game, 2, 3)
    _, reward, terminated, truncated, info = env.step(PLUS)
    assert (reward, terminated, truncated, info["success"]) == (1.0, True, False, True)


def test_a_step_closer_without_arriving_pays_nothing(make_game):
    env = at(make_game, 0, 4)
    _, reward, terminated, truncated, info = env.step(PLUS)
    assert (reward, terminated, truncated) == (0.0, False, False)
    assert info["current"] == 1 and "success" not in info


def test_a_step_away_costs_one(make_game):
    env = at(make_game, 3, 4)
    _, reward, terminated, _, _ = env.step(MINUS)
    assert reward == -1.0 and not terminated and env.current == 2


def test_the_number_is_clamped_and_a_blocked_step_costs_one(make_game):
    env = at(make_game, 0, 3)
    _, reward, _, _, _ = env.step(MINUS)
    assert env.current == 0 and reward == -1.0
    env = at(make_game, 5, 1)
    _, reward, _, _, _ = env.step(PLUS)
    assert env.current == 5 and reward == -1.0


def test_episode_is_truncated_after_ten_steps_without_success(make_game):
    env = at(make_game, 0, 5)
    for step in range(1, 11):
        _, reward, terminated, truncated, info = env.step(MINUS)
        assert reward == -1.0 and not terminated
        assert truncated == (step == 10)
    assert info["success"] is False


def test_deals_are_in_range_and_never_start_on_the_target():
    env = NumberLineEnv()
    seen = set()
    for seed in range(300):
        _, info = env.reset(seed=seed)
        assert 0 <= info["current"] <= 5 and 0 <= info["target"] <= 5
        assert info["current"] != info["target"]
        seen.add((info["current"], info["target"]))
    assert len(seen) == 30  # every ordered pair of distinct numbers occurs
