"""EZPoints: combine two cards into a formula equal to 12.

Observation: a 300x300 image of two playing cards (J, Q and K count as 10).
Actions (13): "1".."10" (ids 0..9), "+" (10), "*" (11), "=" (12).
Deal: the first card's rank uniform on 2..K; the second card is worth 12 // v with
probability 1/2 when v (the first card's number) is 2, 3, 4 or 6, else 12 - v (a 10 is
shown as 10, J, Q or K uniformly); the two cards appear in random order; suits uniform.
Every deal is solvable with + or *.
Rewards and termination: see `vlmrl.games.formula_game`; formulas of more than 5 elements
are truncated with -1, episodes end after 20 steps. Success: "=" on a correct formula.
Ceiling: 1, computed by enumerating every deal with the exhaustive solver.
"""

from __future__ import annotations

from fractions import Fraction

from PIL import Image

from vlmrl.games.cards import (
    RANKS,
    Card,
    blank_table,
    card_with_value,
    draw_row,
    random_card,
    rank_value,
)
from vlmrl.games.formula import is_solvable
from vlmrl.games.formula_game import FormulaGameEnv, FormulaTask

FIRST_RANKS = RANKS[1:]  # 2..K
DIVISOR_VALUES = (2, 3, 4, 6)


def second_card_options(first: int) -> list[tuple[int, Fraction]]:
    """The second card's possible numbers, with their probabilities, given the first card's."""
    if first in DIVISOR_VALUES:
        return [(12 // first, Fraction(1, 2)), (12 - first, Fraction(1, 2))]
    return [(12 - first, Fraction(1))]


class EZPointsEnv(FormulaGameEnv):
    n_cards = 2
    target = 12
    operators = "+*"
    max_formula_length = 5
    max_steps = 20

    def deal(self) -> list[Card]:
        first = random_card(self.np_random, FIRST_RANKS)
        options = second_card_options(first.value)
        second_value = options[0][0] if len(options) == 2 and self.np_random.random() < 0.5 else options[-1][0]
        cards = [first, card_with_value(second_value, self.np_random)]
        if self.np_random.random() < 0.5:
            cards.reverse()
        return cards

    def draw(self) -> Image.Image:
        image = blank_table()
        draw_row(image, self.cards, top=55, card_w=130, card_h=190, margin=15)
        return image


class EZPointsTask(FormulaTask):
    name = "ezpoints"
    env_id = "vlmrl/EZPoints-v0"
    env_class = EZPointsEnv

    title = "EZPoints"
    card_rules = "The image shows two playing cards; J, Q and K count as 10."
    elements = 'a number, "+" or "*"'

    def ceiling(self) -> Fraction:
        total = Fraction(0)
        for rank in FIRST_RANKS:
            first = rank_value(rank)
            for second, p in second_card_options(first):
                if is_solvable([first, second], EZPointsEnv.target, EZPointsEnv.operators):
                    total += Fraction(1, len(FIRST_RANKS)) * p
        return total
