"""Points24: combine four cards into a formula equal to 24.

Observation: a 300x300 image of four playing cards in a 2x2 grid (A = 1; J, Q, K = 10).
Actions (17): "1".."10" (ids 0..9), "+", "-", "*", "/", "(", ")" (10..15), "=" (16).
Deal: four ranks uniform on A..K, suits uniform. Deals are NOT always solvable.
Rewards and termination: see `vlmrl.games.formula_game`; formulas of more than 20 elements
are truncated with -1; episodes end after 40 steps (vlmrl) or, as in the original, within 22
(rl4vlm: absent numbers append blanks, truncation one step after the 21st element). Under
rl4vlm the image shows the current formula below smaller cards. Success: "=" on a correct formula.
Ceiling: the exact probability that a deal is solvable, by enumerating every deal (each
card worth 1..9 with probability 1/13, 10 with 4/13) with the exhaustive solver; the same
under both rule sets (they deal alike, and no solution needs more than 11 elements).
"""

from __future__ import annotations

import itertools
from fractions import Fraction
from functools import lru_cache

from PIL import Image

from vlmrl.games.cards import Card, blank_table, draw_card, random_card, value_probabilities
from vlmrl.games.formula import is_solvable
from vlmrl.games.formula_game import FormulaGameEnv, FormulaTask

GRID = ((20, 12), (160, 12), (20, 156), (160, 156))
CARD_W, CARD_H = 120, 132
RL4VLM_GRID = ((30, 6), (160, 6), (30, 114), (160, 114))  # smaller cards: room for the formula below
RL4VLM_CARD_W, RL4VLM_CARD_H = 110, 102


class Points24Env(FormulaGameEnv):
    n_cards = 4
    target = 24
    operators = "+-*/"
    extra_symbols = ("(", ")")
    max_formula_length = 20
    max_steps = 40

    def deal(self) -> list[Card]:
        return [random_card(self.np_random) for _ in range(self.n_cards)]

    def draw(self) -> Image.Image:
        image = blank_table()
        original = self.rules == "rl4vlm"
        grid, (w, h) = (RL4VLM_GRID, (RL4VLM_CARD_W, RL4VLM_CARD_H)) if original else (GRID, (CARD_W, CARD_H))
        for card, (x, y) in zip(self.cards, grid, strict=False):
            draw_card(image, (x, y, x + w, y + h), card)
        if original:
            self.draw_formula(image, top=226, size=18)
        return image


@lru_cache(maxsize=1)
def solvable_deal_probability() -> Fraction:
    """P(a deal of four cards can make 24), summed exactly over every ordered deal of numbers."""
    p_value = value_probabilities()
    total = Fraction(0)
    for values in itertools.combinations_with_replacement(sorted(p_value), 4):
        if not is_solvable(list(values), Points24Env.target, Points24Env.operators):
            continue
        orderings = len(set(itertools.permutations(values)))
        p = Fraction(orderings)
        for value in values:
            p *= p_value[value]
        total += p
    return total


class Points24Task(FormulaTask):
    name = "points24"
    env_id = "vlmrl/Points24-v0"
    env_class = Points24Env

    title = "Points24"
    card_rules = "The image shows four playing cards; A counts as 1 and J, Q and K count as 10."
    elements = 'a number, "+", "-", "*", "/", "(" or ")"'

    def ceiling(self) -> Fraction:
        return solvable_deal_probability()
