"""Blackjack against a dealer, from an infinite deck.

Observation: a 300x300 image: the dealer's cards on top (one face up, one face down until
the player's turn ends) and the player's cards below.
Actions: 0 = "stand", 1 = "hit".
Deal: every card from an infinite deck (rank uniform on A..K, suit uniform); the player gets
two cards, the dealer one up and one down. Aces count 11 unless that busts the hand.
Rules: hitting past 21 loses at once. On "stand" the dealer draws until reaching 17 or more
(standing on every 17, soft 17 included); then the higher total wins. A natural pays like any
win; no double, split or surrender.
Reward: +1 win, -1 loss or bust, 0 draw. Success: the player wins.
Under ``rules="rl4vlm"`` a card worth 10 is shown as J, Q or K (uniformly), never as a 10, as
in the original; the values dealt, and so every rule, reward and the ceiling, are the same.
(The original also put the dealer's hole card into `info`; no rule set copies that.)
Ceiling: the highest probability of winning any policy reaches, by exact dynamic
programming over the infinite deck (`WinProbabilities`); the expert plays that policy.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache, lru_cache
from typing import Any

import gymnasium as gym
from gymnasium import spaces
from PIL import Image, ImageDraw

from vlmrl.games.base import ANSWER_FORMAT_LINE, DEFAULT_RULES, GameEnv, Task, json_template
from vlmrl.games.cards import Card, blank_table, draw_row, font, random_card, value_probabilities

STAND, HIT = 0, 1
FACES = ("J", "Q", "K")
DEALER_STANDS_AT = 17
CARD_VALUES = value_probabilities()


def hand_total(hard: int, has_ace: bool) -> int:
    """Best total of a hand whose aces sum to `hard` when counted as 1."""
    return hard + 10 if has_ace and hard + 10 <= 21 else hard


def total_of(cards: list[Card]) -> int:
    return hand_total(sum(c.value for c in cards), any(c.rank == "A" for c in cards))


@cache
def dealer_outcomes(hard: int, has_ace: bool) -> tuple[tuple[int, Fraction], ...]:
    """The distribution of the dealer's final total (22 = bust) from a hand (hard, has_ace)."""
    total = hand_total(hard, has_ace)
    if total > 21:
        return ((22, Fraction(1)),)
    if total >= DEALER_STANDS_AT:
        return ((total, Fraction(1)),)
    outcome: dict[int, Fraction] = {}
    for value, p in CARD_VALUES.items():
        for final, q in dealer_outcomes(hard + value, has_ace or value == 1):
            outcome[final] = outcome.get(final, Fraction(0)) + p * q
    return tuple(sorted(outcome.items()))


@cache
def stand_win_probability(player_total: int, upcard: int) -> Fraction:
    """P(win) when standing on `player_total` against a dealer showing `upcard` (hole card unseen)."""
    win = Fraction(0)
    for hole, p in CARD_VALUES.items():
        for final, q in dealer_outcomes(upcard + hole, upcard == 1 or hole == 1):
            if final == 22 or final < player_total:
                win += p * q
    return win


@cache
def win_probabilities(hard: int, has_ace: bool, upcard: int) -> tuple[Fraction, Fraction]:
    """(P(win) if standing now, P(win) if hitting now and then playing on optimally)."""
    stand = stand_win_probability(hand_total(hard, has_ace), upcard)
    hit = Fraction(0)
    for value, p in CARD_VALUES.items():
        hit += p * best_win_probability(hard + value, has_ace or value == 1, upcard)
    return stand, hit


@cache
def best_win_probability(hard: int, has_ace: bool, upcard: int) -> Fraction:
    """The highest P(win) any policy reaches from this player hand (0 once bust)."""
    if hand_total(hard, has_ace) > 21:
        return Fraction(0)
    return max(win_probabilities(hard, has_ace, upcard))


def optimal_action(hard: int, has_ace: bool, upcard: int) -> int:
    """Hit only when that wins strictly more often than standing."""
    stand, hit = win_probabilities(hard, has_ace, upcard)
    return HIT if hit > stand else STAND


@lru_cache(maxsize=1)
def best_win_rate() -> Fraction:
    """The ceiling: expected best P(win) over the initial deal."""
    total = Fraction(0)
    for upcard, p_up in CARD_VALUES.items():
        for first, p1 in CARD_VALUES.items():
            for second, p2 in CARD_VALUES.items():
                total += p_up * p1 * p2 * best_win_probability(first + second, 1 in (first, second), upcard)
    return total


class BlackjackEnv(GameEnv):
    max_steps = 30  # never reached: a hand busts after at most 21 hits

    def __init__(self, render_mode: str | None = None, rules: str = DEFAULT_RULES) -> None:
        super().__init__(render_mode, rules)
        self.action_space = spaces.Discrete(2)
        self.player: list[Card] = []
        self.dealer: list[Card] = []
        self.revealed = False
        self.steps = 0

    def _draw_card(self) -> Card:
        card = random_card(self.np_random)
        if self.rules == "rl4vlm" and card.rank == "10":
            card = random_card(self.np_random, FACES)  # the original shows every ten as a face card
        return card

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.player = [self._draw_card(), self._draw_card()]
        self.dealer = [self._draw_card(), self._draw_card()]
        self.revealed = False
        self.steps = 0
        return self.observation(), self.state_info()

    def step(self, action):
        self.steps += 1
        if int(action) == HIT:
            self.player.append(self._draw_card())
            terminated = total_of(self.player) > 21
            reward = -1.0 if terminated else 0.0
        else:
            while total_of(self.dealer) < DEALER_STANDS_AT:
                self.dealer.append(self._draw_card())
            player, dealer = total_of(self.player), total_of(self.dealer)
            reward = 1.0 if dealer > 21 or player > dealer else (0.0 if player == dealer else -1.0)
            terminated = True
        self.revealed = terminated
        truncated = not terminated and self.steps >= self.max_steps
        info = self._finish(self.state_info(), terminated, truncated, success=reward > 0)
        return self.observation(), reward, terminated, truncated, info

    @property
    def upcard(self) -> Card:
        return self.dealer[0]

    def state_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "player_cards": [c.rank for c in self.player],
            "player_total": total_of(self.player),
            "dealer_upcard": self.upcard.rank,
        }
        if self.revealed:
            info["dealer_cards"] = [c.rank for c in self.dealer]
            info["dealer_total"] = total_of(self.dealer)
        return info

    def draw(self) -> Image.Image:
        image = blank_table()
        draw = ImageDraw.Draw(image)
        draw.text((10, 4), "Dealer", font=font(18), fill=(255, 255, 255))
        draw.text((10, 152), "Player", font=font(18), fill=(255, 255, 255))
        dealer: list[Card | None] = list(self.dealer) if self.revealed else [self.upcard, None]
        draw_row(image, dealer, top=26, card_w=90, card_h=120)
        draw_row(image, list(self.player), top=174, card_w=90, card_h=120)
        return image


class BlackjackTask(Task):
    name = "blackjack"
    env_id = "vlmrl/Blackjack-v0"
    action_names = ("stand", "hit")

    def prompt(self, info: dict[str, Any], cot: bool = True) -> str:
        rules = (
            "You are a blackjack player. The image shows the dealer's cards at the top (one face up, "
            "one face down) and your cards at the bottom. Aces count as 11 or 1, and J, Q and K as 10. "
            'Choose "hit" to take another card or "stand" to end your turn; the dealer then draws '
            "until reaching 17 or more. You win with a total closer to 21 than the dealer's, "
            "and lose at once if your total goes over 21."
        )
        if cot:
            template = json_template(
                {
                    "thoughts": '"<read your cards and the dealer\'s face-up card, add up your total, then decide>"',
                    "action": self.action_list(),
                }
            )
        else:
            template = json_template({"action": self.action_list()})
        return f"{rules}\n{ANSWER_FORMAT_LINE}\n{template}"

    def describe(self, env: gym.Env) -> dict[str, Any]:
        return {}

    def _state(self, env: gym.Env) -> tuple[int, bool, int]:
        game = env.unwrapped
        return sum(c.value for c in game.player), any(c.rank == "A" for c in game.player), game.upcard.value

    def expert_action(self, env: gym.Env) -> int:
        return optimal_action(*self._state(env))

    def reasoning(self, env: gym.Env, action: int, argued: bool | None = None) -> str:
        game = env.unwrapped
        hard, has_ace, upcard = self._state(env)
        total = hand_total(hard, has_ace)
        soft = " (soft, an ace counts 11)" if total != hard else ""
        opening = (
            f"My cards are {', '.join(c.rank for c in game.player)}, a total of {total}{soft}. "
            f"The dealer shows {game.upcard.rank}."
        )
        name = self.action_names[action]
        if not self.argues(env, action, argued):
            return f"{opening} I choose to {name}."
        stand, hit = (float(p) for p in win_probabilities(hard, has_ace, upcard))
        if action == HIT:
            return f"{opening} Hitting wins more often ({hit:.0%}) than standing ({stand:.0%}), so I hit."
        return f"{opening} Standing wins at least as often ({stand:.0%}) as hitting ({hit:.0%}), so I stand."

    def ceiling(self) -> Fraction:
        return best_win_rate()
