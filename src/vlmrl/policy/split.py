"""Where the chain of thought ends and the action begins, in any tokenizer's tokens.

The paper scales the log-probability of the chain-of-thought tokens by lambda and keeps the
action tokens whole. Its release found the boundary by hard-coded token ids of `"action":`,
which were wrong for the tokenizer it used. Here the boundary is found in the decoded text:
the last `"action"` key (the one the parser reads) starts at some character, and the first
action token is the first token whose decoded prefix reaches past that character. This
works for byte-level BPE, SentencePiece and any other tokenizer that can decode a prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

ACTION_KEY = '"action"'


class Decoder(Protocol):
    def decode(self, ids: Sequence[int], skip_special_tokens: bool = ...) -> str: ...


def action_start(tokenizer: Decoder, response_ids: Sequence[int]) -> int:
    """Index of the first action token; 0 when the response has no `"action"` key.

    Tokens before the index are chain of thought (scaled by lambda); the rest are action
    tokens. A response without the key counts wholly as action tokens.
    """
    ids = list(response_ids)
    text = tokenizer.decode(ids, skip_special_tokens=True)
    boundary = text.rfind(ACTION_KEY)
    if boundary <= 0:
        return 0
    for index in range(len(ids)):
        if len(tokenizer.decode(ids[: index + 1], skip_special_tokens=True)) > boundary:
            return index
    return 0
