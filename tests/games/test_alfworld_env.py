"""ALFWorld on alfworld's text engine: the shipped games, the reward and termination rules, the
expert, the text wrapper's rules for a game with dynamic actions, and the game generator; the
optional THOR engine against a stand-in for alfworld's THOR worker."""

import json
import shutil
import sys
import types
from typing import ClassVar

import numpy as np
import pytest

pytest.importorskip("alfworld")

from vlmrl.games import TextActionWrapper, get_task, make_env
from vlmrl.games.alfworld.data import SHIPPED_DATA, SPLITS
from vlmrl.games.alfworld.engine import Engine, split_intro
from vlmrl.games.alfworld.env import ALFWorldEnv
from vlmrl.games.alfworld.generate import SHIPPED_SEED, generate_game
from vlmrl.games.alfworld.thor import SCENE_KEYS
from vlmrl.infra.errors import UsageError

TASK = get_task("alfworld")


@pytest.fixture(scope="module")
def envs():
    """One environment per split over the shipped games (building one loads Fast Downward)."""
    return {split: ALFWorldEnv(split=split, data="shipped") for split in SPLITS}


def play_expert(env, game, seed=0):
    """Play a game with the expert's answers; returns (rewards, last info, answers all parsed back)."""
    _, info = env.reset(seed=seed, options={"game": game})
    rewards, parsed_back = [], True
    while True:
        action, text = TASK.expert(env)
        parsed_back &= TASK.parse(text, info).action == action
        _, reward, terminated, truncated, info = env.step(action)
        rewards.append(reward)
        if terminated or truncated:
            return rewards, info, parsed_back


@pytest.mark.parametrize("split", SPLITS)
def test_every_shipped_game_loads_is_won_by_the_expert_and_reports_its_task_type(envs, split):
    env = envs[split]
    for index, game in enumerate(env.games):
        rewards, info, parsed_back = play_expert(env, index)
        assert info["game"] == game.name and info["task_type"] == game.task_type
        assert game.name.split("/")[1].startswith(info["task_type"])
        assert info["success"] is True and info["won"] and info["goal_condition_success_rate"] == 1.0, game.name
        assert len(rewards) <= 50 and parsed_back, game.name
        assert sum(rewards) == pytest.approx(51.0)  # 50 for the win + the final goal-condition rate of 1


def test_winning_pays_50_plus_the_goal_condition_rate(envs):
    env = envs["valid_unseen"]
    heat = next(i for i, g in enumerate(env.games) if g.task_type == "pick_heat_then_place_in_recep")
    rewards, _, _ = play_expert(env, heat)
    assert rewards[-1] == pytest.approx(50 + 2 / 3)  # placing the hot object meets the last 2 of 3 sub-goals
    assert sorted(set(np.round(rewards[:-1], 6))) == [0.0, round(1 / 3, 6)]  # heating met the first
    level = ALFWorldEnv(split="valid_unseen", data="shipped", goal_reward="level")
    rewards, _, _ = play_expert(level, heat)
    assert rewards[-1] == pytest.approx(51.0)  # the paper's rule: the rate itself, every step
    assert rewards[-2] == pytest.approx(1 / 3)


def test_an_inadmissible_command_costs_one_and_changes_nothing(envs):
    env = envs["train"]
    _, info = env.reset(seed=3)
    for action in ("fly to the moon", 10_000, -1):
        _, reward, terminated, truncated, after = env.step(action)
        assert reward == -1.0 and not terminated and not truncated
        assert after["observation"] == "Nothing happens." and after["admissible"] is False
        assert after["admissible_commands"] == info["admissible_commands"]
    assert after["step"] == 3
    _, reward, _, _, after = env.step(info["admissible_commands"].index("look"))
    assert reward == 0.0 and after["admissible"] is True and after["last_action"] == "look"
    assert env.step("look")[4]["admissible"] is True  # a command string is an action too


def test_episodes_are_truncated_after_50_steps(envs):
    env = envs["train"]
    env.reset(seed=5)
    for step in range(1, 51):
        # inadmissible commands count as steps (and cost nothing to simulate); the last few are real
        _, _, terminated, truncated, info = env.step("inventory" if step > 45 else "sing")
        assert truncated == (step == 50) and not terminated
    assert info["success"] is False and info["step"] == 50


def test_the_seed_picks_the_game_and_replays_the_episode(envs):
    env = envs["train"]
    names = {env.reset(seed=seed)[1]["game"] for seed in range(6)}
    assert len(names) > 1

    def episode(seed):
        obs, info = env.reset(seed=seed)
        trace = [info["game"]]
        for _ in range(6):
            command = env.expert_command()
            obs, _, terminated, _, info = env.step(command)
            trace.append((command, info["observation"]))
            if terminated:
                break
        return trace, obs

    (trace_a, obs_a), (trace_b, obs_b) = episode(11), episode(11)
    assert trace_a == trace_b and np.array_equal(obs_a, obs_b)


def test_text_wrapper_uses_the_papers_penalty_and_the_steps_admissible_list(envs):
    env = TextActionWrapper(envs["valid_seen"], TASK)
    assert env.invalid_action == "penalty"
    obs, info = env.reset(seed=2)
    same_obs, reward, _, _, after = env.step('{"thoughts": "hm", "action": "teleport"}')
    assert reward == -1.0 and after["invalid"] and after["action"] is None and np.array_equal(obs, same_obs)
    command = info["admissible_commands"][-1]
    _, _, _, _, after = env.step(f'{{"thoughts": "ok", "action": "{command}"}}')
    assert after["action"] == info["admissible_commands"].index(command) and after["action_name"] == command
    assert after["last_action"] == command and env.invalid_rate == 0.5
    randomised = TextActionWrapper(envs["valid_seen"], TASK, invalid_action="random")
    _, info = randomised.reset(seed=2)
    after = randomised.step("no idea")[4]
    assert after["invalid"] and after["action_name"] in info["admissible_commands"]


def test_an_empty_or_wrong_data_folder_is_one_clear_line(monkeypatch, tmp_path):
    with pytest.raises(UsageError) as error:
        make_env("alfworld", data=str(tmp_path))
    assert "$ALFWORLD_DATA" in str(error.value) and "\n" not in str(error.value)
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path / "nowhere"))
    with pytest.raises(UsageError, match="alfworld-download"):
        make_env("alfworld")


def test_engine_matches_alfworlds_own_stack():
    """vlmrl's engine (memoised translation and grammar parsing) says what alfworld's does."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    from textworld.envs import PddlEnv

    game = sorted(SHIPPED_DATA.rglob("game.tw-pddl"))[0]
    reference = AlfredInfos(AlfredDemangler(PddlEnv(textworld.EnvInfos(admissible_commands=True, won=True))))
    reference.load(str(game))
    expected = reference.reset()
    engine = Engine()
    state = engine.reset(game, seed=0)
    for command in json.loads(game.read_text())["walkthrough"]:
        assert state.feedback == expected["feedback"]
        assert list(state.admissible) == expected["admissible_commands"] and state.won == expected["won"]
        state, (expected, _, _) = engine.step(command), reference.step(command)
    assert state.won and expected["won"]


def test_the_generator_rewrites_a_shipped_game_byte_for_byte(tmp_path):
    """The shipped set is the generator's output for its fixed seed (and the generator is deterministic)."""
    shipped = next((SHIPPED_DATA / "json_2.1.1" / "valid_unseen").glob("pick_and_place_simple-*/*"))
    folder = generate_game("pick_and_place_simple", "valid_unseen", SHIPPED_SEED, 0, tmp_path)
    assert folder.relative_to(tmp_path) == shipped.relative_to(SHIPPED_DATA)
    for name in ("game.tw-pddl", "traj_data.json"):
        assert (folder / name).read_bytes() == (shipped / name).read_bytes()


def test_split_intro_separates_the_room_from_the_task():
    room, task = split_intro(
        "-= Welcome to TextWorld, ALFRED! =-\n\nYou see a desk 1.\n\nYour task is to: put a pen in desk."
    )
    assert (room, task) == ("You see a desk 1.", "put a pen in desk")


# ------------------------------------------------------------------ THOR (a stand-in: no Unity player here)
class StandInThorWorker:
    """What vlmrl uses of alfworld's `AlfredThorEnv.Thor` worker, on a two-step game: go to the
    fridge, take the apple (won). THOR itself cannot start on these machines."""

    started: ClassVar[list] = []
    FRAME = np.full((600, 400, 3), (10, 200, 30), dtype=np.uint8)

    def __init__(self, queue, train_eval="train"):
        assert queue is None and train_eval == "train"

    def init_env(self, config):
        assert config["env"]["thor"]["screen_width"] == 300 and config["controller"]["type"] == "oracle"
        self.env = types.SimpleNamespace(last_event=types.SimpleNamespace(frame=self.FRAME), stop=self.stop)
        self.started.append(self)
        self.stopped = False

    def stop(self):
        self.stopped = True

    def reset(self, task_file):
        print(f"Task: {task_file}")  # alfworld's worker prints; vlmrl must keep stdout clean
        self.controller = types.SimpleNamespace(inventory=[])
        self.feedback = (
            "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. You see a fridge 1.\n\n"
            "Your task is to: put a cool apple in countertop."
        )
        self.at_fridge = False

    def step(self, action):
        if action == "go to fridge 1":
            self.at_fridge, self.feedback = True, "You arrive at fridge 1. You see an apple 1."
        elif action == "take apple 1 from fridge 1":
            self.controller.inventory.append("apple 1")
            self.feedback = "You pick up the apple 1 from the fridge 1."

    def get_results(self):
        won = bool(self.controller.inventory)
        if won:
            return self.feedback, True, ["look"], True, 1.0, ["look"]
        if self.at_fridge:
            return (
                self.feedback,
                False,
                ["take apple 1 from fridge 1", "look"],
                False,
                0.5,
                ["take apple 1 from fridge 1"],
            )
        return self.feedback, False, ["go to fridge 1", "look"], False, 0.0, ["go to fridge 1"]


@pytest.fixture
def stand_in_thor(monkeypatch, tmp_path):
    """alfworld's THOR module replaced by the stand-in, and one shipped game given an ALFRED scene."""
    module = types.ModuleType("alfworld.agents.environment.alfred_thor_env")
    module.AlfredThorEnv = types.SimpleNamespace(Thor=StandInThorWorker)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    StandInThorWorker.started = []
    shipped = next((SHIPPED_DATA / "json_2.1.1" / "train").glob("pick_cool_then_place_in_recep-*/*"))
    trial = tmp_path / "json_2.1.1" / "train" / shipped.parent.name / shipped.name
    shutil.copytree(shipped, trial)
    traj = json.loads((trial / "traj_data.json").read_text())
    traj["scene"] |= {key: traj["scene"].get(key, []) for key in SCENE_KEYS}
    (trial / "traj_data.json").write_text(json.dumps(traj))
    return tmp_path


def test_the_thor_engine_plays_alfworlds_thor_worker_and_shows_its_frame(stand_in_thor, capsys):
    env = TextActionWrapper(make_env("alfworld", data=str(stand_in_thor), engine="thor"), TASK)
    obs, info = env.reset(seed=0)
    assert obs.shape == (300, 300, 3) and (obs == (10, 200, 30)).all()  # THOR's frame, resized
    assert info["task"] == "put a cool apple in countertop" and info["admissible_commands"] == [
        "go to fridge 1",
        "look",
    ]
    assert info["observation"].startswith("You are in the middle of a room")
    rewards, answers = [], []
    while True:
        action, answer = TASK.expert(env)
        answers.append(answer)
        assert TASK.parse(answer, info).action == action
        obs, reward, terminated, truncated, info = env.step(answer)
        rewards.append(reward)
        if terminated or truncated:
            break
    assert info["success"] and info["won"] and rewards == pytest.approx([0.5, 50.5])  # goal rate from THOR
    assert "apple 1" in answers[-1] and info["task_type"] == "pick_cool_then_place_in_recep"
    assert capsys.readouterr().out == ""
    env.close()
    assert StandInThorWorker.started[-1].stopped


def test_thor_refuses_games_without_a_scene_before_starting_and_has_only_the_handcoded_expert(stand_in_thor):
    with pytest.raises(UsageError, match="no THOR scene"):
        make_env("alfworld", data="shipped", engine="thor")
    assert StandInThorWorker.started == []
    with pytest.raises(UsageError, match="handcoded expert only"):
        make_env("alfworld", data=str(stand_in_thor), engine="thor", expert="planner")
    with pytest.raises(UsageError, match="engine must be one of text, thor"):
        make_env("alfworld", engine="unity")


def test_thor_without_its_dependencies_is_one_line():
    try:
        import ai2thor  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("ai2thor is installed here")
    with pytest.raises(UsageError) as error:
        make_env("alfworld", engine="thor")
    assert "pip install 'alfworld[vis]'" in str(error.value) and "\n" not in str(error.value)
