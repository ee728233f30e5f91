"""Cards must stay readable when a small model sees the image shrunk to 112 px."""

import itertools

import numpy as np
import pytest
from PIL import Image

from vlmrl.games.cards import RANKS, SUITS, Card, draw_card

MODEL_SIZE = 112
CARD_SIZES = {"blackjack": (90, 120), "points24": (120, 132), "ezpoints": (130, 190)}


def shrunk_corner(card: Card, width: int, height: int) -> np.ndarray:
    """The card's left half (rank and suit index) after the 300 -> 112 px resize, in grey."""
    image = Image.new("RGB", (width + 10, height + 10), (22, 110, 60))
    draw_card(image, (5, 5, 5 + width, 5 + height), card)
    scale = MODEL_SIZE / 300
    small = image.resize((round(image.width * scale), round(image.height * scale)), Image.BILINEAR)
    grey = np.asarray(small.convert("L"), dtype=int)
    return grey[:, : grey.shape[1] // 2]


@pytest.mark.parametrize("game", sorted(CARD_SIZES))
def test_every_two_cards_still_differ_in_their_corner_at_112_px(game):
    """The corner index alone tells any two of the 52 cards apart after shrinking (clearly differing pixels)."""
    crops = {(rank, suit): shrunk_corner(Card(rank, suit), *CARD_SIZES[game]) for rank in RANKS for suit in SUITS}
    for a, b in itertools.combinations(crops, 2):
        differing = int((np.abs(crops[a] - crops[b]) > 64).sum())
        threshold = 20 if a[0] == b[0] else 4  # a suit differs in a whole symbol, a rank at least in strokes
        assert differing >= threshold, f"{a} and {b} differ in only {differing} pixels at {MODEL_SIZE} px"


def test_ranks_are_drawn_dark_enough_to_survive_shrinking():
    corner = shrunk_corner(Card("8", "spades"), *CARD_SIZES["blackjack"])
    assert corner.min() < 60, "thin strokes turn grey when shrunk"
