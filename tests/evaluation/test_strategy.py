"""The Blackjack strategy chart: each cell's hand is what it says, its optimal action the exact one, and
the hit rates are the policy's."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from vlmrl.evaluation.strategy import HARD_TOTALS, SOFT_TOTALS, UPCARDS, blackjack_chart, two_cards
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
    }


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
