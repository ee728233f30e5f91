"""The answer parser: JSON first, then the last "action" field, exact legal names only, never raising."""

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.games import TASKS, get_task
from vlmrl.games.parsing import parse_action

POINTS = get_task("points24").action_names
ALL_TASKS = [get_task(name) for name in TASKS]


def action_of(text, names=POINTS):
    parsed = parse_action(text, names)
    return names[parsed.action] if parsed.valid else None


def test_reads_a_json_answer():
    assert action_of('{"cards": [1, 2, 3, 4], "thoughts": "x", "action": "10"}') == "10"


def test_ten_is_never_read_as_one():
    assert action_of('{"action": "10"}') == "10"
    assert action_of('{"action": "1"}') == "1"
    assert action_of('"action": 10') == "10"
    assert action_of('{"action": "10x"}') is None
    assert action_of('{"action": "1 0"}') is None


def test_numbers_may_be_written_as_json_numbers():
    assert action_of('{"action": 7}') == "7"
    assert action_of('{"action": 7.0}') == "7"
    assert action_of('{"action": 7.5}') is None
    assert action_of('{"action": true}') is None


def test_case_blanks_and_quotes_around_the_name_are_forgiven_but_nothing_else():
    names = ("stand", "hit")
    assert action_of('{"action": " Hit "}', names) == "hit"
    assert action_of('{"action": "\'stand\'"}', names) == "stand"
    assert action_of('{"action": "hit me"}', names) is None
    assert action_of('{"action": "hitstand"}', names) is None


def test_the_last_answer_wins():
    text = 'Example: {"action": "+"}. My answer: {"thoughts": "go down", "action": "-"}'
    assert action_of(text, ("-", "+")) == "-"


def test_an_example_nested_in_the_thoughts_does_not_shadow_the_answer():
    text = json.dumps({"thoughts": 'not {"action": "+"}', "action": "-"})
    assert action_of(text, ("-", "+")) == "-"


def test_falls_back_to_the_last_action_field_of_broken_json():
    assert action_of('{"thoughts": "I need 24", "action": "*"', POINTS) == "*"
    assert action_of('thoughts... "action": "(" and then "action": ")" trailing', POINTS) == ")"
    assert action_of('```json\n{"action": "=",}\n```', POINTS) == "="
    assert action_of("The action is 10", POINTS) is None


def test_invalid_answers_say_why():
    assert 'no "action" field' in parse_action("I think I will hit.", ("stand", "hit")).reason
    reason = parse_action('{"action": "double"}', ("stand", "hit")).reason
    assert '"double" is not a legal action' in reason and '"stand", "hit"' in reason
    assert parse_action(None, ("stand", "hit")).valid is False  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_never_raises_on_arbitrary_text(text):
    for task in ALL_TASKS:
        parsed = task.parse(text)
        assert parsed.valid == (parsed.action is not None)
        if parsed.valid:
            assert 0 <= parsed.action < len(task.action_names)
        else:
            assert parsed.reason


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    task_index=st.integers(0, len(ALL_TASKS) - 1),
    data=st.data(),
    thoughts=st.text(max_size=200),
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
    prefix=st.text(max_size=50),
)
def test_any_well_formed_answer_parses_to_its_action(task_index, data, thoughts, extra, prefix):
    """Whatever the other fields hold, and whatever prose precedes the answer."""
    task = ALL_TASKS[task_index]
    action = data.draw(st.integers(0, len(task.action_names) - 1))
    fields = {k: v for k, v in extra.items() if k.strip().lower() != "action"}
    fields.update(thoughts=thoughts, action=task.action_names[action])
    prefix = prefix.replace("{", "(")
    assert task.parse(prefix + json.dumps(fields)).action == action


@settings(max_examples=200, deadline=None)
@given(value=st.text(max_size=12))
def test_only_exact_legal_names_are_accepted(value):
    for task in ALL_TASKS:
        parsed = task.parse(json.dumps({"action": value}))
        legal = [n for n in task.action_names if n.lower() == value.strip().strip("'\"`").strip().lower()]
        assert parsed.valid == bool(legal)
        if parsed.valid:
            assert task.action_names[parsed.action] == legal[0]


@pytest.mark.parametrize("text", ['{"action": ' * 5000, "{" * 50_000, '"action": "' * 3000, "[" * 10_000 + "{"])
def test_adversarial_nesting_and_length_do_not_raise(text):
    for task in ALL_TASKS:
        assert task.parse(text).valid is False
