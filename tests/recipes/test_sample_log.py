"""The chain of thought of an answer, and the diversity of thoughts over an update (thought collapse shows as 1/n)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vlmrl.recipes.sample_log import cot_diversity, thought


def test_the_thought_is_what_comes_before_the_last_action_key():
    answer = '{"thoughts": "current 2,  target 4:\\n go up", "action": "+"}'
    assert thought(answer) == '{"thoughts": "current 2, target 4:\\n go up",'
    assert thought('{"action": "-"}') == "{"  # no chain of thought: the same for every answer
    assert thought("garbage without a key") == "garbage without a key"
    assert thought('"action": "+" then "action": "-"') == '"action": "+" then'


def test_diversity_is_distinct_thoughts_over_samples():
    assert cot_diversity(["a", "b", "c", "d"]) == 1.0
    assert cot_diversity(["same"] * 8) == 1 / 8
    assert cot_diversity(["a", "a", "b", "b"]) == 0.5
    assert cot_diversity([]) == 0.0


@given(st.text())
def test_any_text_has_a_thought_without_surrounding_or_repeated_blanks(text):
    cut = thought(text)
    assert cut == cut.strip() and "  " not in cut
    assert thought(text + ' "action": "x"') == " ".join(text.split())  # the last key is the one cut at
