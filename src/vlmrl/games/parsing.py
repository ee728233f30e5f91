"""Reading an action out of untrusted model text.

A VLM answers with a JSON object whose last field is ``"action"``; in practice the text is
often truncated, wrapped in prose or code fences, or not JSON at all. The rules, in order:

1. the last JSON object in the text that has an ``"action"`` key gives the answer;
2. otherwise the last ``"action": value`` in the text (quoted or bare value) does;
3. the value must name a legal action *exactly* (case and surrounding blanks and quotes
   aside): ``"10"`` is never read as ``"1"``, ``"hit me"`` is not ``"hit"``.

Nothing here evaluates the text, and nothing raises, whatever the text is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

MAX_ANSWER_CHARS = 20_000
"""Longer texts are cut to their last part: answers end with the action, and a bound keeps
the JSON scan linear in practice even on adversarial input."""

_ACTION_FIELD = re.compile(r'"action"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,}\]"]+))', re.IGNORECASE)


@dataclass(frozen=True)
class Parsed:
    """The action an answer names, or why it names none (``action`` is None then)."""

    action: int | None
    valid: bool
    reason: str = ""


def normalise(name: str) -> str:
    """The form in which action names are compared: no surrounding blanks or quotes, lower case."""
    return name.strip().strip("'\"`").strip().lower()


def json_objects(text: str) -> list[dict]:
    """Every JSON object that can be decoded starting at some '{' of the text, in order.

    Objects nested inside an object already found are skipped, so a reply that quotes an
    example answer inside its thoughts does not shadow its own top-level answer.
    """
    decoder = json.JSONDecoder()
    found: list[dict] = []
    position = text.find("{")
    while position != -1:
        try:
            value, end = decoder.raw_decode(text, position)
        except (ValueError, RecursionError):
            position = text.find("{", position + 1)
            continue
        if isinstance(value, dict):
            found.append(value)
        position = text.find("{", end)
    return found


def _action_value(obj: dict) -> object | None:
    for key, value in obj.items():
        if isinstance(key, str) and key.strip().lower() == "action":
            return value
    return None


def _as_name(value: object) -> str | None:
    """A JSON value as an action name: strings as they are, integers as digits."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e9:
        return str(int(value))
    return None


def match_action(value: object, action_names: Sequence[str]) -> Parsed:
    """Map a value to the index of the legal action it names exactly."""
    name = _as_name(value)
    legal = ", ".join(f'"{n}"' for n in action_names)
    if name is None:
        return Parsed(None, False, f"the action is not a string but {type(value).__name__}; expected one of {legal}")
    wanted = normalise(name)
    for index, candidate in enumerate(action_names):
        if normalise(candidate) == wanted:
            return Parsed(index, True)
    shown = name if len(name) <= 40 else name[:37] + "..."
    return Parsed(None, False, f'"{shown}" is not a legal action; expected one of {legal}')


def parse_action(text: str, action_names: Sequence[str]) -> Parsed:
    """Find the action a model's answer names; see the module docstring for the rules."""
    if not isinstance(text, str):
        return Parsed(None, False, f"the answer is not text but {type(text).__name__}")
    text = text[-MAX_ANSWER_CHARS:]
    for obj in reversed(json_objects(text)):
        value = _action_value(obj)
        if value is not None:
            return match_action(value, action_names)
    fields = list(_ACTION_FIELD.finditer(text))
    if not fields:
        return Parsed(None, False, 'the answer has no "action" field')
    last = fields[-1]
    quoted, bare = last.group(1), last.group(2)
    if quoted is not None:
        try:
            value = json.loads(f'"{quoted}"')
        except ValueError:
            value = quoted
    else:
        value = bare
    return match_action(value, action_names)


def format_answer(fields: dict[str, object]) -> str:
    """An answer as the JSON object the prompts ask for (fields in the given order)."""
    return json.dumps(fields, ensure_ascii=False)
