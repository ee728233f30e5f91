"""Playing cards: ranks, suits, values, deals from the infinite deck, and how a card is drawn.

Cards are drawn with Pillow's primitives and its built-in FreeType font, so nothing is
fetched and every machine draws the same pixels. Suits are vector shapes (not font glyphs,
which the built-in font lacks); hearts and diamonds are red, spades and clubs black.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

RANKS = ("A", "2", "3", "4", "5", "6", "7", "8", "9", "10", "J", "Q", "K")
SUITS = ("spades", "hearts", "diamonds", "clubs")
RED_SUITS = ("hearts", "diamonds")
INK = (20, 20, 20)
RED = (200, 20, 30)
TABLE_GREEN = (22, 110, 60)


@dataclass(frozen=True)
class Card:
    rank: str
    suit: str

    @property
    def value(self) -> int:
        """The card's number in the formula games: A = 1, J/Q/K = 10."""
        return rank_value(self.rank)

    def __str__(self) -> str:
        return f"{self.rank} of {self.suit}"


def rank_value(rank: str) -> int:
    if rank == "A":
        return 1
    if rank in ("J", "Q", "K"):
        return 10
    return int(rank)


def value_probabilities() -> dict[int, Fraction]:
    """P(a card from the infinite deck is worth n): 1/13 for 1..9, 4/13 for 10."""
    probabilities: dict[int, Fraction] = {}
    for rank in RANKS:
        probabilities[rank_value(rank)] = probabilities.get(rank_value(rank), Fraction(0)) + Fraction(1, len(RANKS))
    return probabilities


def random_card(rng: np.random.Generator, ranks: tuple[str, ...] = RANKS) -> Card:
    """One card from an infinite deck: rank uniform over `ranks`, suit uniform."""
    return Card(ranks[int(rng.integers(len(ranks)))], SUITS[int(rng.integers(len(SUITS)))])


@lru_cache(maxsize=32)
def font(size: int) -> ImageFont.FreeTypeFont:
    """Pillow's built-in FreeType font at a pixel size (cached: loading it is not free)."""
    return ImageFont.load_default(size=size)


def draw_text_centered(draw: ImageDraw.ImageDraw, xy: tuple[float, float], text: str, size: int, fill) -> None:
    draw.text(xy, text, font=font(size), fill=fill, anchor="mm")


def draw_suit(draw: ImageDraw.ImageDraw, cx: float, cy: float, size: float, suit: str) -> None:
    """A suit symbol of height about `size`, centred on (cx, cy).

    The shapes exaggerate what tells them apart, so that they still differ when an image is
    shrunk for a small model: the spade has a sharp tip, the club three separate round lobes.
    """
    color = RED if suit in RED_SUITS else INK
    h = size / 2
    if suit == "diamonds":
        draw.polygon([(cx, cy - h), (cx + 0.75 * h, cy), (cx, cy + h), (cx - 0.75 * h, cy)], fill=color)
    elif suit == "hearts":
        r = 0.5 * h
        draw.ellipse([cx - 2 * r, cy - h, cx, cy - h + 2 * r], fill=color)
        draw.ellipse([cx, cy - h, cx + 2 * r, cy - h + 2 * r], fill=color)
        draw.polygon([(cx - 1.95 * r, cy - h + 1.3 * r), (cx + 1.95 * r, cy - h + 1.3 * r), (cx, cy + h)], fill=color)
    elif suit == "spades":
        r = 0.42 * h
        draw.polygon([(cx, cy - h), (cx + 0.92 * h, cy + 0.2 * h), (cx - 0.92 * h, cy + 0.2 * h)], fill=color)
        draw.ellipse([cx - 0.92 * h, cy - 0.2 * h, cx - 0.92 * h + 2 * r, cy - 0.2 * h + 2 * r], fill=color)
        draw.ellipse([cx + 0.92 * h - 2 * r, cy - 0.2 * h, cx + 0.92 * h, cy - 0.2 * h + 2 * r], fill=color)
        draw.polygon([(cx, cy + 0.2 * h), (cx + 0.35 * h, cy + h), (cx - 0.35 * h, cy + h)], fill=color)
    elif suit == "clubs":
        r = 0.36 * h
        for lx, ly in ((cx, cy - h + r), (cx - 0.58 * h, cy - 0.02 * h), (cx + 0.58 * h, cy - 0.02 * h)):
            draw.ellipse([lx - r, ly - r, lx + r, ly + r], fill=color)
        draw.polygon([(cx, cy - 0.3 * h), (cx + 0.3 * h, cy + h), (cx - 0.3 * h, cy + h)], fill=color)
    else:
        raise ValueError(f"unknown suit {suit!r}")


def draw_card(image: Image.Image, box: tuple[int, int, int, int], card: Card | None) -> None:
    """A card face (or its back when `card` is None) filling `box` = (x0, y0, x1, y1).

    The rank and a suit sit in the top-left corner, as on a real card, so that a card still
    reads when the next one overlaps its right part; a large suit fills the middle.
    """
    draw = ImageDraw.Draw(image)
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    radius = max(4, int(0.08 * min(w, h)))
    if card is None:
        draw.rounded_rectangle(box, radius=radius, fill=(30, 60, 150), outline=(240, 240, 240), width=3)
        inset = int(0.14 * min(w, h))
        draw.rounded_rectangle(
            (x0 + inset, y0 + inset, x1 - inset, y1 - inset), radius=radius, outline=(170, 190, 240), width=2
        )
        for gy in range(y0 + 2 * inset, y1 - inset - 4, 12):
            for gx in range(x0 + 2 * inset, x1 - inset - 4, 12):
                draw.polygon([(gx, gy - 4), (gx + 4, gy), (gx, gy + 4), (gx - 4, gy)], fill=(120, 150, 220))
        return
    draw.rounded_rectangle(box, radius=radius, fill=(252, 252, 248), outline=INK, width=2)
    color = RED if card.suit in RED_SUITS else INK
    corner = max(14, int(0.36 * min(w, 1.2 * h)))
    bold = max(1, corner // 18)  # thin strokes would turn grey when the image is shrunk
    draw.text(
        (x0 + 0.06 * w, y0 + 0.03 * h),
        card.rank,
        font=font(corner),
        fill=color,
        anchor="la",
        stroke_width=bold,
        stroke_fill=color,
    )
    draw_suit(draw, x0 + 0.06 * w + 0.36 * corner, y0 + 0.05 * h + 1.6 * corner, 0.8 * corner, card.suit)
    draw_suit(draw, x0 + 0.62 * w, y0 + 0.64 * h, 0.42 * min(w, h), card.suit)


def blank_table(size: int = 300) -> Image.Image:
    return Image.new("RGB", (size, size), TABLE_GREEN)


def draw_row(
    image: Image.Image, cards: list[Card | None], top: int, card_w: int, card_h: int, margin: int = 10
) -> None:
    """Cards side by side from the left margin, overlapping only when they would not fit."""
    n = len(cards)
    if n == 0:
        return
    room = image.width - 2 * margin - card_w
    step = card_w + 8 if n == 1 else min(card_w + 8, room / (n - 1))
    for i, card in enumerate(cards):
        x = int(margin + i * step)
        draw_card(image, (x, top, x + card_w, top + card_h), card)
