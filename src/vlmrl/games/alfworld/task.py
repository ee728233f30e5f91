"""ALFWorld's text interface: the prompt, the command parser, and the expert's answers.

The prompt carries what the paper's did: the game's text observation, the task and the
admissible commands of this step, then the JSON answer format of every vlmrl game
(``thoughts`` and ``action``; ``action`` alone without chain of thought).

Parsing (never raises, never evaluates anything): the answer's ``action`` value is found as
for every game (`vlmrl.games.parsing`: the last JSON object with an ``action``, else the last
``"action": ...`` field). It must name one admissible command of this step:
1. the value *is* an admissible command (case, blanks, quotes and a final full stop aside);
2. otherwise the value must contain admissible commands as whole phrases, longest first:
   ``"go to cabinet 10"`` holds ``"go to cabinet 1"`` only as a prefix, not as a phrase, and
   the longest phrase that matches wins; a value naming two different commands (``"open
   drawer 1 then go to desk 1"``) names none.
The action id is the command's index in this step's ``info["admissible_commands"]``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

import gymnasium as gym

from vlmrl.games.base import ANSWER_FORMAT_LINE, Task, json_template
from vlmrl.games.parsing import MAX_ANSWER_CHARS, Parsed, json_objects

_ACTION_FIELD = re.compile(r'"action"\s*:\s*(?:"((?:[^"\\]|\\.)*)"|([^,}\]"]+))', re.IGNORECASE)
_MATCH_CHARS = 2_000
"""Only the start of a very long action value is searched for commands."""


def normalise_command(text: str) -> str:
    """How commands are compared: lower case, single spaces, no surrounding quotes or final stop."""
    text = " ".join(text.lower().split())
    return text.strip(" '\"`").rstrip(".!").strip(" '\"`")


def answer_action_value(text: str) -> tuple[bool, Any]:
    """(found, value) of the answer's ``action`` field, by the rules of `vlmrl.games.parsing`."""
    for obj in reversed(json_objects(text)):
        for key, value in obj.items():
            if isinstance(key, str) and key.strip().lower() == "action":
                return True, value
    fields = list(_ACTION_FIELD.finditer(text))
    if not fields:
        return False, None
    quoted, bare = fields[-1].group(1), fields[-1].group(2)
    if quoted is None:
        return True, bare
    try:
        return True, json.loads(f'"{quoted}"')
    except ValueError:
        return True, quoted


def match_command(value: Any, admissible: Sequence[str]) -> Parsed:
    """The admissible command a value names (rules in the module docstring)."""
    if not isinstance(value, str):
        return Parsed(None, False, f"the action is not a string but {type(value).__name__}")
    wanted = normalise_command(value)
    commands = [normalise_command(c) for c in admissible]
    if wanted in commands:
        return Parsed(commands.index(wanted), True)
    searched = wanted[:_MATCH_CHARS]
    spans = []
    for index, command in enumerate(commands):
        if not command:
            continue
        pattern = r"(?<![a-z0-9])" + re.escape(command) + r"(?![a-z0-9])"
        spans.extend((m.start(), m.end(), index) for m in re.finditer(pattern, searched))
    kept: list[tuple[int, int, int]] = []
    for start, end, index in sorted(spans, key=lambda s: (s[0] - s[1], s[0])):
        if not any(start >= a and end <= b for a, b, _ in kept):
            kept.append((start, end, index))
    named = {commands[index] for _, _, index in kept}
    shown = value if len(value) <= 60 else value[:57] + "..."
    if len(named) == 1:
        return Parsed(kept[0][2], True)
    if named:
        return Parsed(None, False, f'"{shown}" names several admissible actions: ' + ", ".join(sorted(named)))
    return Parsed(None, False, f'"{shown}" is not an admissible action now')


def parse_command(text: str, admissible: Sequence[str]) -> Parsed:
    """Find the admissible command an answer names; see the module docstring for the rules."""
    if not isinstance(text, str):
        return Parsed(None, False, f"the answer is not text but {type(text).__name__}")
    if not admissible:
        return Parsed(None, False, "no admissible actions are known for this step")
    found, value = answer_action_value(text[-MAX_ANSWER_CHARS:])
    if not found:
        return Parsed(None, False, 'the answer has no "action" field')
    return match_command(value, admissible)


def article(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def object_class(name: str) -> str:
    """``"cabinet 10"`` -> ``"cabinet"``: the class of an object or receptacle the player sees."""
    return name.rsplit(" ", 1)[0] if name.rsplit(" ", 1)[-1].isdigit() else name


class ALFWorldTask(Task):
    """Actions are this step's admissible commands (``info["admissible_commands"]``); an answer
    naming none of them costs the paper's -1 (`default_invalid_action` is ``"penalty"``)."""

    name = "alfworld"
    env_id = "vlmrl/ALFWorld-v0"
    action_names = ()
    dynamic_actions = True
    default_invalid_action = "penalty"

    def legal_actions(self, info: dict[str, Any] | None = None) -> Sequence[str]:
        return tuple((info or {}).get("admissible_commands") or ())

    def legal_actions_in(self, env: gym.Env) -> Sequence[str]:
        return env.unwrapped.admissible_commands

    def parse(self, text: str, info: dict[str, Any] | None = None) -> Parsed:
        return parse_command(text, self.legal_actions(info))

    def prompt(self, info: dict[str, Any], cot: bool = True) -> str:
        commands = ", ".join(f'"{c}"' for c in self.legal_actions(info))
        rules = (
            "You are an agent in a household (ALFWorld) and act by text commands.\n"
            f"Your task is to: {info.get('task', '')}.\n"
            f"What you observe: {info.get('observation', '')}\n"
            f"Admissible actions now: {commands}"
        )
        action = '"<one admissible action, copied exactly>"'
        if cot:
            thoughts = '"<what the observation means for the task, then which admissible action gets it done>"'
            template = json_template({"thoughts": thoughts, "action": action})
        else:
            template = json_template({"action": action})
        return f"{rules}\n{ANSWER_FORMAT_LINE}\n{template}"

    def describe(self, env: gym.Env) -> dict[str, Any]:
        return {}

    def expert_action(self, env: gym.Env) -> int:
        game = env.unwrapped
        return game.admissible_commands.index(game.expert_command())

    def reasoning(self, env: gym.Env, action: int, argued: bool | None = None) -> str:
        game = env.unwrapped
        command = game.admissible_commands[action]
        lead = f"My task is to {game.task}."
        if not self.argues(env, action, argued):
            return f'{lead} I choose "{command}".'
        return f"{lead} {explain(command, game.holding(), game.params)}"

    def ceiling(self) -> Fraction:
        return Fraction(1)


def explain(command: str, holding: list[str], params: dict[str, Any]) -> str:
    """Why a command moves the task on, in words true to the state (what is held, the targets)."""
    target = str(params.get("object_target") or "").lower()
    parent = str(params.get("parent_target") or "").lower()
    carried = holding[0] if holding else ""
    verb, _, rest = command.partition(" ")
    if command.startswith("go to "):
        place = command[len("go to ") :]
        if carried and object_class(carried) == target and object_class(place) == parent:
            return f"I carry the {carried}, so I go to the {place} to put it there."
        if carried:
            return f"I carry the {carried}; next I go to the {place}."
        return f"I go to the {place} to see what is there."
    if verb == "take":
        thing, _, place = rest.partition(" from ")
        if object_class(thing) == target:
            return f"The task needs {article(target)} and the {thing} is one, so I take it from the {place}."
        return f"I take the {thing} from the {place}."
    if verb in ("move", "put"):  # the text engine's "move X to Y", THOR's "put X in/on Y"
        thing, _, place = rest.partition(" to " if verb == "move" else " in/on ")
        if object_class(thing) == target and object_class(place) == parent:
            return f"I put the {thing} in the {place}, as the task asks."
        return f"I put the {thing} in the {place}."
    if verb in ("heat", "cool", "clean"):
        thing, _, tool = rest.partition(" with ")
        if object_class(thing) == target:
            state = {"heat": "hot", "cool": "cool", "clean": "clean"}[verb]
            return f"The task needs the {thing} {state}, so I {verb} it with the {tool}."
        return f"I {verb} the {thing} with the {tool}."
    if verb == "open":
        return f"The {rest} is closed; I open it to look inside."
    if verb == "close":
        return f"I close the {rest} again."
    if verb == "use":
        if carried:
            return f"I switch on the {rest} to look at the {carried} in its light."
        return f"I switch on the {rest}."
    if verb == "examine":
        return f"I examine the {rest}."
    if command == "look":
        return "I look around to see where I am."
    if command == "inventory":
        return "I check what I am carrying."
    return f'I choose "{command}".'
