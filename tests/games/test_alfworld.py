"""ALFWorld's pure-Python parts, which work without the optional alfworld package: the command
parser, the prompt, the image, goal-condition success, finding games, and the one-line errors."""

import json
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.games import OPTIONAL_TASKS, TASKS, game_names, get_task, make_env
from vlmrl.games.alfworld import data, thor
from vlmrl.games.alfworld.conditions import goal_condition_rate, goal_conditions
from vlmrl.games.alfworld.data import (
    SHIPPED_DATA,
    SPLITS,
    TASK_TYPES,
    find_games,
    require_alfworld,
    resolve_data_root,
)
from vlmrl.games.alfworld.render import draw_observation
from vlmrl.games.alfworld.task import answer_action_value, parse_command
from vlmrl.infra.errors import UsageError

CABINETS = ["go to cabinet 1", "go to cabinet 10", "go to cabinet 11", "go to cabinet 2", "look"]
TAKES = ["take apple 1 from cabinet 1", "take apple 1 from cabinet 10", "take apple 10 from cabinet 1", "inventory"]


def named(text, admissible=CABINETS):
    parsed = parse_command(text, admissible)
    return admissible[parsed.action] if parsed.valid else None


# ------------------------------------------------------------------ parser
def test_reads_the_admissible_command_an_answer_names():
    assert named('{"thoughts": "the apple may be there", "action": "go to cabinet 2"}') == "go to cabinet 2"
    assert named('{"action": " Go To  Cabinet 2. "}') == "go to cabinet 2"
    assert named('thoughts... "action": "look"') == "look"


def test_cabinet_ten_is_never_read_as_cabinet_one():
    assert named('{"action": "go to cabinet 10"}') == "go to cabinet 10"
    assert named('{"action": "go to cabinet 1"}') == "go to cabinet 1"
    assert named('{"action": "go to cabinet 11"}') == "go to cabinet 11"
    assert named('{"action": "go to cabinet 12"}') is None
    assert named('{"action": "take apple 10 from cabinet 1"}', TAKES) == "take apple 10 from cabinet 1"
    assert named('{"action": "take apple 1 from cabinet 10"}', TAKES) == "take apple 1 from cabinet 10"


def test_inside_a_longer_value_the_longest_whole_command_wins():
    assert named('{"action": "I will go to cabinet 10 now"}') == "go to cabinet 10"
    assert named('{"action": "go to cabinet 1, the nearest"}') == "go to cabinet 1"
    assert named('{"action": "then take apple 1 from cabinet 10."}', TAKES) == "take apple 1 from cabinet 10"


def test_a_value_naming_two_commands_names_none():
    parsed = parse_command('{"action": "go to cabinet 2 or look"}', CABINETS)
    assert not parsed.valid and "several" in parsed.reason


def test_only_the_action_field_counts_not_the_thoughts():
    assert named('{"thoughts": "go to cabinet 2 is wrong", "action": "look"}') == "look"
    assert named('{"thoughts": "go to cabinet 2", "action": "fly"}') is None


def test_without_the_steps_admissible_list_nothing_parses():
    task = get_task("alfworld")
    parsed = task.parse('{"action": "look"}')
    assert not parsed.valid and "admissible" in parsed.reason
    assert task.parse('{"action": "look"}', {"admissible_commands": ["look"]}).action == 0


def prefix_families():
    """Admissible lists whose commands are prefixes of each other ("... 1", "... 10", "... 100")."""
    number = st.integers(1, 120).map(str)
    command = st.tuples(st.sampled_from(["go to cabinet", "open drawer", "take apple"]), number).map(" ".join)
    return st.lists(command, min_size=1, max_size=25, unique=True)


@settings(max_examples=300, deadline=None)
@given(admissible=prefix_families(), text=st.text(max_size=300))
def test_fuzz_parse_never_raises_and_returns_only_admissible_commands(admissible, text):
    for candidate in (text, json.dumps({"action": text}), f'"action": "{text}"'):
        parsed = parse_command(candidate, admissible)
        assert parsed.valid == (parsed.action is not None)
        if parsed.valid:
            assert 0 <= parsed.action < len(admissible)
            _, value = answer_action_value(candidate)
            assert admissible[parsed.action] in " ".join(str(value).lower().split())


@settings(max_examples=200, deadline=None)
@given(admissible=prefix_families(), data=st.data())
def test_fuzz_an_answer_naming_a_command_parses_back_to_it(admissible, data):
    index = data.draw(st.integers(0, len(admissible) - 1))
    text = json.dumps({"thoughts": data.draw(st.text(max_size=80)), "action": admissible[index]})
    assert parse_command(text, admissible).action == index


@given(text=st.one_of(st.none(), st.integers(), st.binary()))
def test_parse_survives_non_text(text):
    assert not parse_command(text, CABINETS).valid


# ------------------------------------------------------------------ prompt and image
def test_prompt_carries_observation_task_and_admissible_actions():
    task = get_task("alfworld")
    info = {
        "observation": "You arrive at fridge 1.",
        "task": "put a cool apple in countertop",
        "admissible_commands": ["open fridge 1", "go to cabinet 1"],
    }
    prompt = task.prompt(info)
    assert "You arrive at fridge 1." in prompt and "put a cool apple in countertop" in prompt
    assert '"open fridge 1", "go to cabinet 1"' in prompt
    template = prompt.splitlines()[-1]
    assert template.index('"thoughts"') < template.index('"action"')
    assert '"thoughts"' not in task.prompt(info, cot=False).splitlines()[-1]


def test_image_shows_the_text_and_changes_with_it():
    a = np.asarray(draw_observation("put a hot apple in fridge", "You arrive at cabinet 1.", "go to cabinet 1"))
    b = np.asarray(draw_observation("put a hot apple in fridge", "You arrive at cabinet 2.", "go to cabinet 2"))
    long = np.asarray(draw_observation("examine the book with the desklamp", "you see a cabinet 1, " * 60))
    assert a.shape == long.shape == (300, 300, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)


# ------------------------------------------------------------------ goal conditions
def facts(*items):
    return [(name, tuple(args)) for name, *args in items]


TYPES = facts(
    ("objecttype", "apple 1", "appletype"),
    ("objecttype", "apple 2", "appletype"),
    ("objecttype", "desklamp 1", "desklamptype"),
    ("receptacletype", "fridge 1", "fridgetype"),
    ("receptacletype", "desk 1", "desktype"),
    ("receptacleatlocation", "desk 1", "loc 2"),
)
PARAMS = {"object_target": "Apple", "parent_target": "Fridge", "toggle_target": "DeskLamp"}


@pytest.mark.parametrize(
    ("task_type", "state", "expected"),
    [
        ("pick_and_place_simple", [], (0, 1)),
        ("pick_and_place_simple", [("inreceptacle", "apple 1", "fridge 1")], (1, 1)),
        ("pick_two_obj_and_place", [("inreceptacle", "apple 1", "fridge 1")], (1, 2)),
        (
            "pick_two_obj_and_place",
            [("inreceptacle", "apple 1", "fridge 1"), ("inreceptacle", "apple 2", "fridge 1")],
            (2, 2),
        ),
        ("pick_heat_then_place_in_recep", [("ishot", "apple 1")], (1, 3)),
        ("pick_heat_then_place_in_recep", [("ishot", "apple 1"), ("inreceptacle", "apple 2", "fridge 1")], (2, 3)),
        ("pick_heat_then_place_in_recep", [("ishot", "apple 1"), ("inreceptacle", "apple 1", "fridge 1")], (3, 3)),
        ("pick_cool_then_place_in_recep", [("ishot", "apple 1"), ("inreceptacle", "apple 1", "fridge 1")], (1, 3)),
        ("pick_clean_then_place_in_recep", [("isclean", "apple 1")], (1, 3)),
        ("look_at_obj_in_light", [("holds", "agent1", "apple 1")], (1, 2)),
        (
            "look_at_obj_in_light",
            [("inreceptacle", "desklamp 1", "desk 1"), ("istoggled", "desklamp 1"), ("atlocation", "agent1", "loc 1")],
            (0, 2),
        ),
        (
            "look_at_obj_in_light",
            [
                ("holds", "agent1", "apple 1"),
                ("inreceptacle", "desklamp 1", "desk 1"),
                ("istoggled", "desklamp 1"),
                ("atlocation", "agent1", "loc 2"),
            ],
            (2, 2),
        ),
    ],
)
def test_goal_conditions_count_the_sub_goals_met(task_type, state, expected):
    assert goal_conditions(task_type, PARAMS, TYPES + facts(*state)) == expected
    assert goal_condition_rate(task_type, PARAMS, TYPES + facts(*state)) == expected[0] / expected[1]


# ------------------------------------------------------------------ registry, data and errors
def test_alfworld_is_known_but_not_among_the_core_games():
    assert "alfworld" in OPTIONAL_TASKS and "alfworld" not in TASKS
    assert "alfworld" not in game_names() and game_names(optional=True)[-1] == "alfworld"
    assert get_task("ALFWorld").env_id == "vlmrl/ALFWorld-v0"
    assert get_task("alfworld").dynamic_actions and get_task("alfworld").default_invalid_action == "penalty"


def test_importing_the_games_does_not_import_alfworld():
    import subprocess

    code = "import sys, vlmrl.games; print(any(m.split('.')[0] in ('alfworld', 'textworld') for m in sys.modules))"
    assert (
        subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
        == "False"
    )


def test_missing_alfworld_is_one_line_saying_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "alfworld.agents.environment.alfred_tw_env", None)
    with pytest.raises(UsageError) as error:
        require_alfworld()
    with pytest.raises(UsageError) as from_make:
        make_env("alfworld")
    for message in (str(error.value), str(from_make.value)):
        assert "pip install 'vlmrl[alfworld]'" in message and "alfworld-download" in message and "\n" not in message


def test_thor_without_ai2thor_is_one_line_saying_what_it_needs(monkeypatch):
    """The THOR path cannot run here (no Unity player, no display); what it needs must be one line."""
    monkeypatch.setattr(thor, "require_alfworld", lambda: None)  # alfworld itself present, its THOR side not
    monkeypatch.setitem(sys.modules, "alfworld.agents.environment.alfred_thor_env", None)
    with pytest.raises(UsageError) as error:
        thor.require_thor()
    message = str(error.value)
    assert "pip install 'alfworld[vis]'" in message and "alfworld-download" in message and "\n" not in message


def test_a_game_without_an_alfred_scene_is_text_only(tmp_path):
    with pytest.raises(UsageError, match=r"no THOR scene .*object_poses.*text only"):
        thor.check_thor_scene(next(SHIPPED_DATA.rglob("traj_data.json")))
    (tmp_path / "traj_data.json").write_text(json.dumps({"scene": dict.fromkeys(thor.SCENE_KEYS, 0)}))
    thor.check_thor_scene(tmp_path / "traj_data.json")


def test_missing_games_are_one_line_naming_every_way_to_get_them(tmp_path):
    with pytest.raises(UsageError) as error:
        find_games(tmp_path, "valid_unseen")
    message = str(error.value)
    assert "\n" not in message
    for needed in ("$ALFWORLD_DATA", "json_2.1.1/valid_unseen/<task>/<trial>/", "alfworld-download", str(SHIPPED_DATA)):
        assert needed in message


def test_unknown_split_or_task_type_is_a_usage_error():
    with pytest.raises(UsageError, match="known splits: train, valid_seen, valid_unseen"):
        find_games(SHIPPED_DATA, "test")
    with pytest.raises(UsageError, match="unknown ALFWorld task type 'cook'"):
        find_games(SHIPPED_DATA, "train", ("cook",))


def test_data_root_is_the_argument_then_alfworld_data_then_alfworlds_cache_then_the_shipped_games(
    monkeypatch, tmp_path
):
    cache = tmp_path / "cache"
    monkeypatch.setattr(data, "ALFWORLD_DEFAULT_CACHE", cache)
    monkeypatch.delenv("ALFWORLD_DATA", raising=False)
    assert resolve_data_root(None) == SHIPPED_DATA
    assert resolve_data_root("shipped") == SHIPPED_DATA
    assert resolve_data_root(tmp_path) == tmp_path
    monkeypatch.setenv("ALFWORLD_DATA", str(cache))  # what importing alfworld sets when the user did not
    assert resolve_data_root(None) == SHIPPED_DATA
    (cache / "json_2.1.1").mkdir(parents=True)  # alfworld-download filled alfworld's cache
    assert resolve_data_root(None) == cache
    monkeypatch.delenv("ALFWORLD_DATA")
    assert resolve_data_root(None) == cache  # whether or not alfworld was imported first
    monkeypatch.setenv("ALFWORLD_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path  # set by the user: used, and an error if empty


def test_the_shipped_games_cover_every_task_type_in_every_split():
    for split in SPLITS:
        games = find_games(SHIPPED_DATA, split)
        assert {game.task_type for game in games} == set(TASK_TYPES), split
        for game in games:
            assert game.name.split("/")[1].startswith(game.task_type)
            assert game.game.is_file() and json.loads(game.game.read_text())["solvable"] is True
