"""The Blackjack strategy chart: each cell's hand is what it says, its optimal action the exact one, and
the hit rates are the policy's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.evaluation.strategy import (
    HARD_TOTALS,
    SOFT_TOTALS,
    UPCARDS,
    blackjack_chart,
    read_from_thoughts,
    two_cards,
)
from vlmrl.games.blackjack import total_of
from vlmrl.games.cards import Card
from vlmrl.games.parsing import format_answer


class AnswersBy:
    """A policy whose answer is `rule(prompt index)`; records what it was asked."""

    def __init__(self, rule) -> None:
        self.rule, self.asked = rule, 0

    def generate(self, images, prompts, temperature, max_new_tokens):
        answers = []
        for _ in prompts:
            answers.append(SimpleNamespace(text=self.rule(self.asked)))
            self.asked += 1
        return answers


@pytest.mark.parametrize(("kind", "totals"), [("hard", HARD_TOTALS), ("soft", SOFT_TOTALS)])
def test_every_row_deals_two_cards_of_its_kind_and_total(kind, totals):
    for total in totals:
        cards = [Card(rank, "spades") for rank in two_cards(kind, total)]
        assert total_of(cards) == total and (any(c.rank == "A" for c in cards) == (kind == "soft"))


def test_a_policy_that_always_hits_agrees_where_hitting_is_optimal():
    chart = blackjack_chart(AnswersBy(lambda k: format_answer({"action": "hit"})), temperature=1.0, samples=2)
    assert len(chart.cells) == (len(HARD_TOTALS) + len(SOFT_TOTALS)) * len(UPCARDS)
    assert all(cell.hit_rate == 1.0 and cell.invalid == 0 for cell in chart.cells)
    optimal = {(c.hand, c.upcard): c.optimal for c in chart.cells}
    assert optimal["hard 11", "10"] == "hit" and optimal["hard 18", "7"] == "stand"
    assert optimal["hard 16", "10"] == "stand"  # P(win): standing on 16 wins 21.2%, hitting 18.5%
    assert optimal["soft 17", "7"] == "hit"
    assert chart.agreement == pytest.approx(sum(o == "hit" for o in optimal.values()) / len(optimal))


def test_cells_count_invalid_answers_and_mixed_decisions():
    rule = lambda k: "garbage" if k % 4 == 0 else format_answer({"action": "stand" if k % 4 == 1 else "hit"})  # noqa: E731
    chart = blackjack_chart(AnswersBy(rule), temperature=1.0, samples=4)
    assert all(cell.invalid == 1 and cell.hit_rate == pytest.approx(2 / 3) for cell in chart.cells)
    assert chart.as_dict()["cells"][0] == {
        "hand": "hard 8",
        "upcard": "2",
        "cards": ["6", "2"],
        "hit_rate": pytest.approx(2 / 3),
        "optimal": "hit",
        "invalid": 1,
        "read": 0,
        "read_and_optimal": 0,
    }
    assert chart.reading == 0 and chart.optimal_when_read is None


def test_the_thoughts_tell_whether_the_hand_and_the_dealers_card_were_read_right():
    """A policy that reads every hand right but the dealer's card only on even prompts, and always stands."""
    rows = [("hard", t) for t in HARD_TOTALS] + [("soft", t) for t in SOFT_TOTALS]
    samples = 2

    def rule(k):
        kind, total = rows[k // (samples * len(UPCARDS))]
        upcard = UPCARDS[k // samples % len(UPCARDS)] if k % 2 == 0 else "K"
        thoughts = f"My cards are {', '.join(two_cards(kind, total))}, a total of {total}. The dealer shows {upcard}."
        return format_answer({"thoughts": thoughts, "action": "stand"})

    chart = blackjack_chart(AnswersBy(rule), temperature=1.0, samples=samples)
    assert chart.reading == pytest.approx(0.5)
    assert all(cell.read == 1 and cell.read_and_optimal == (cell.optimal == "stand") for cell in chart.cells)
    stand_cells = sum(cell.optimal == "stand" for cell in chart.cells)
    assert chart.optimal_when_read == pytest.approx(stand_cells / len(chart.cells))


def test_reading_takes_the_first_total_and_up_card_the_thoughts_state():
    assert read_from_thoughts("My cards are A, 6, a total of 17 (soft). The dealer shows 10.") == (17, "10")
    assert read_from_thoughts("a total of 9, no: a total of 19; dealer shows Q") == (9, "Q")
    assert read_from_thoughts("I stand.") == (None, None)
    assert read_from_thoughts("a total of 123, dealer shows 1") == (None, None)


@settings(max_examples=300, deadline=None)
@given(st.text(), st.text(alphabet=" ,.;:!?abc\n"), st.integers(4, 21), st.sampled_from([*UPCARDS, "J", "Q", "K"]))
def test_reading_any_text_never_fails_and_finds_the_stated_total_and_card(text, gap, total, upcard):
    found_total, found_upcard = read_from_thoughts(text)
    assert found_total is None or 0 <= found_total <= 99
    assert found_upcard is None or found_upcard in {*UPCARDS, "J", "Q", "K"}
    stated = f"a total of {total}.{gap}The dealer shows {upcard}.{gap}{text}"
    assert read_from_thoughts(stated) == (total, upcard)


def test_the_command_prints_the_chart_of_a_model_folder_as_json(tiny_llava, monkeypatch, capsys):
    import json

    import vlmrl.evaluation.strategy as strategy
    from vlmrl.cli import main

    asked = {}

    def chart(policy, temperature, samples, max_new_tokens, cot):
        asked.update(temperature=temperature, samples=samples, cot=cot)
        return blackjack_chart(AnswersBy(lambda k: format_answer({"action": "stand"})), temperature, samples)

    monkeypatch.setattr(strategy, "blackjack_chart", chart)
    assert (
        main(["bench", "strategy", "--run", str(tiny_llava), "--samples", "2", "--temperature", "0.5", "--json"]) == 0
    )
    printed = json.loads(capsys.readouterr().out)
    assert asked == {"temperature": 0.5, "samples": 2, "cot": True}
    assert printed["bench"] == "strategy" and all(cell["hit_rate"] == 0.0 for cell in printed["cells"])
    assert main(["bench", "strategy", "--run", str(tiny_llava), "--samples", "2"]) == 0
    table = capsys.readouterr().out
    assert "hard 16" in table and "S 0%" in table


@pytest.mark.parametrize(("env", "refused"), [("blackjack", False), ("numberline", True)])
def test_an_sft_run_is_charted_with_the_prompt_it_was_trained_on(
    env, refused, tiny_llava, tmp_path, monkeypatch, capsys
):
    import json
    import shutil

    import vlmrl.evaluation.strategy as strategy
    from vlmrl.cli import main
    from vlmrl.infra.typed_config import save_config
    from vlmrl.recipes.config import load_sft_config

    run = tmp_path / "sft"
    shutil.copytree(tiny_llava, run / "model")
    save_config(load_sft_config(env=env, overrides=["cot=false"]), run / "config.yaml")
    asked = {}

    def chart(policy, temperature, samples, max_new_tokens, cot):
        asked.update(cot=cot)
        return blackjack_chart(AnswersBy(lambda k: format_answer({"action": "hit"})), temperature, samples)

    monkeypatch.setattr(strategy, "blackjack_chart", chart)
    code = main(["bench", "strategy", "--run", str(run), "--samples", "1", "--json"])
    out, err = capsys.readouterr()
    if refused:
        assert code != 0 and "is a numberline run" in err and not asked
    else:
        assert code == 0 and asked == {"cot": False} and json.loads(out)["reading"] == 0
