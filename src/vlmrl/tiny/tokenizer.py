"""A byte-level BPE tokenizer trained on the games' own text, for the tiny models.

The tiny models have no pretrained tokenizer to borrow, and a tokenizer fitted to what
they read and write (the prompts and the JSON answers of the games) keeps their
sequences short, so they train fast. Byte-level BPE still encodes ANY text, so a random
model's output or an unusual prompt never hits an unknown token.

Training is deterministic: the corpus comes from fixed seeds, is iterated in a fixed
order, and the `tokenizers` BPE trainer breaks ties deterministically, so the same
arguments give a byte-identical `tokenizer.json`. That holds whether or not the optional
alfworld package is installed: ALFWorld's part of the corpus is written from the files of
the games vlmrl ships, read as plain text (`alfworld_corpus`), never by alfworld's engine.
"""

from __future__ import annotations

import functools
import json
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

CORPUS_EPISODES = 40
"""Seeded episodes per game; more adds nothing: the prompts repeat, only numbers and cards change."""
CORPUS_MAX_STEPS = 30
EXPERT_PROBABILITY = 0.7
"""The other steps take random actions, so states an expert never reaches appear too."""


@dataclass(frozen=True)
class Corpus:
    prompts: tuple[str, ...]
    answers: tuple[str, ...]


@functools.cache
def game_corpus(episodes: int = CORPUS_EPISODES, seed: int = 0) -> Corpus:
    """Every prompt (with and without chain of thought) and answers for every action, in a fixed order.

    Answers are written for all actions, not just the expert's: the tokenizer should
    encode a wrong answer as compactly as a right one, or RL would favour some actions
    for their length. Cached: every tiny build of a process reads the same corpus.
    """
    from vlmrl.games import TASKS, get_task, make_env

    prompts: list[str] = []
    answers: list[str] = []
    for name in TASKS:
        task, env = get_task(name), make_env(name)
        rng = random.Random(f"{seed}:{name}")
        for episode in range(episodes):
            _, info = env.reset(seed=seed * 100_000 + episode)
            for _ in range(CORPUS_MAX_STEPS):
                prompts += [task.prompt(info, cot=True), task.prompt(info, cot=False)]
                expert, _ = task.expert(env)
                for action in range(len(task.action_names)):
                    answers += [task.answer(env, action, cot=True), task.answer(env, action, cot=False)]
                chosen = expert if rng.random() < EXPERT_PROBABILITY else rng.randrange(len(task.action_names))
                _, _, terminated, truncated, info = env.step(chosen)
                if terminated or truncated:
                    break
        env.close()
    alfworld = alfworld_corpus()
    return Corpus(tuple(prompts) + alfworld.prompts, tuple(answers) + alfworld.answers)


# ---------------------------------------------------------------- ALFWorld, without alfworld
_FACT = re.compile(r"\((receptacleType|objectType|inReceptacle|openable) (\S+)(?: (\S+))?\)")
_LOOK = "You are in the middle of a room. Looking quickly around you, you see "
_BASINS = ("sinkbasin", "bathtubbasin")
_TOOLS = {"microwave": "heat", "fridge": "cool", **{basin: "clean" for basin in _BASINS}}
_LAMPS = ("desklamp", "floorlamp")


def _listing(names: Iterable[str]) -> str:
    """alfworld's way of listing things: "a apple 1, and a mug 1", or "nothing"."""
    items = [f"a {name}" for name in names]
    if not items:
        return "nothing"
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + ", and " + items[-1]


@dataclass
class _Room:
    """A shipped game's room as its PDDL problem declares it, followed through its walkthrough;
    also what `ALFWorldTask`'s answers read of an environment (task, params, admissible commands,
    what is held, the expert's next command)."""

    task: str
    params: dict
    receptacles: list[str]
    contents: dict[str, list[str]]
    openable: set[str]
    opened: set[str] = field(default_factory=set)
    place: str | None = None
    held: str | None = None
    next_command: str = "look"
    admissible_commands: tuple[str, ...] = ()

    @property
    def unwrapped(self) -> _Room:
        return self

    def holding(self) -> list[str]:
        return [self.held] if self.held else []

    def expert_command(self) -> str:
        return self.next_command

    def seen_in(self, receptacle: str) -> str:
        if receptacle in self.openable and receptacle not in self.opened:
            return f"The {receptacle} is closed."
        things = _listing(self.contents.get(receptacle, []))
        if receptacle in self.openable:
            return f"The {receptacle} is open. In it, you see {things}."
        return f"On the {receptacle}, you see {things}."

    def commands(self) -> list[str]:
        """Roughly what alfworld admits here: going anywhere, and acting on the receptacle at hand."""
        commands = ["help", "inventory", "look"] + [f"go to {r}" for r in self.receptacles if r != self.place]
        here = self.place
        if here is not None:
            commands.append(f"examine {here}")
            if here in self.openable:
                commands.append(f"{'close' if here in self.opened else 'open'} {here}")
            visible = here not in self.openable or here in self.opened
            if self.held is None and visible:
                commands += [f"take {thing} from {here}" for thing in self.contents.get(here, [])]
            kind = here.rsplit(" ", 1)[0]
            if self.held is not None:
                commands.append(f"examine {self.held}")
                if visible:
                    commands.append(f"move {self.held} to {here}")
                if kind in _TOOLS:
                    commands.append(f"{_TOOLS[kind]} {self.held} with {here}")
            if kind in _LAMPS:
                commands.append(f"use {here}")
        return sorted(set(commands + [self.next_command]))

    def step(self, command: str) -> str:
        """The game's text after `command`, in alfworld's words."""
        verb, _, rest = command.partition(" ")
        if command.startswith("go to "):
            self.place = command[len("go to ") :]
            return f"You arrive at {self.place}. {self.seen_in(self.place)}"
        if verb in ("open", "close") and rest in self.contents:
            (self.opened.add if verb == "open" else self.opened.discard)(rest)
            return f"You open the {rest}. {self.seen_in(rest)}" if verb == "open" else f"You close the {rest}."
        if verb == "take":
            thing, _, place = rest.partition(" from ")
            self.held = thing
            if thing in self.contents.get(place, []):
                self.contents[place].remove(thing)
            return f"You pick up the {thing} from the {place}."
        if verb == "move":
            thing, _, place = rest.partition(" to ")
            self.held = None
            self.contents.setdefault(place, []).append(thing)
            return f"You move the {thing} to the {place}."
        if verb in ("heat", "cool", "clean"):
            thing, _, tool = rest.partition(" with ")
            return f"You {verb} the {thing} using the {tool}."
        if verb == "use":
            return f"You turn on the {rest}."
        if verb == "examine":
            return self.seen_in(rest) if rest in self.contents else f"This is a normal {rest}."
        if command == "inventory":
            return f"You are carrying: a {self.held}." if self.held else "You are not carrying anything."
        if command == "look":
            return (
                f"You are facing the {self.place}. Next to it, you see nothing." if self.place else _LOOK + "nothing."
            )
        return "Nothing happens."


def _read_room(game_file: Path) -> tuple[_Room, list[str]]:
    """A shipped game's room (instances numbered in the order the problem declares them) and its walkthrough."""
    game = json.loads(game_file.read_text())
    traj = json.loads((game_file.parent / "traj_data.json").read_text())
    names: dict[str, str] = {}
    counts: dict[str, int] = {}
    contents: dict[str, list[str]] = {}
    inside: list[tuple[str, str]] = []
    openable: set[str] = set()
    for predicate, first, second in _FACT.findall(game["pddl_problem"]):
        if predicate in ("receptacleType", "objectType") and first not in names:
            kind = second.removesuffix("Type").lower()
            counts[kind] = counts.get(kind, 0) + 1
            names[first] = f"{kind} {counts[kind]}"
            if predicate == "receptacleType":
                contents[names[first]] = []
        elif predicate == "inReceptacle":
            inside.append((first, second))
        elif predicate == "openable":
            openable.add(first)
    for thing, receptacle in inside:
        if thing in names and names.get(receptacle) in contents:
            contents[names[receptacle]].append(names[thing])
    room = _Room(
        task=traj["turk_annotations"]["anns"][0]["task_desc"],
        params=dict(traj.get("pddl_params") or {}),
        receptacles=list(contents),
        contents=contents,
        openable={names[r] for r in openable if r in names},
    )
    return room, list(game.get("walkthrough") or [])


@functools.cache
def alfworld_corpus() -> Corpus:
    """ALFWorld's prompts and answers, written from the shipped games' files as plain text.

    Each shipped game's walkthrough (alfworld's expert's commands, stored in the game file) is
    followed through a small model of its room: the receptacles and objects its PDDL problem
    declares, what is in what, what is open and held. Every step gets the prompt `ALFWorldTask`
    writes and an answer for every admissible command, worded as alfworld's grammar words its
    feedback. The text is close to the engine's without being the same (the engine numbers
    instances its own way and admits a few more commands); what the tokenizer needs is the
    vocabulary: commands, objects, receptacles, feedback sentences, tasks, the prompt's frame.
    """
    from vlmrl.games.alfworld import SHIPPED_DATA, ALFWorldTask

    task = ALFWorldTask()
    prompts: list[str] = []
    answers: list[str] = []
    for game_file in sorted(SHIPPED_DATA.glob("json_2.1.1/*/*/*/game.tw-pddl")):
        room, walkthrough = _read_room(game_file)
        observation = _LOOK + _listing(room.receptacles) + "."
        for command in walkthrough:
            room.next_command = command
            room.admissible_commands = tuple(room.commands())
            info = {"task": room.task, "observation": observation, "admissible_commands": room.admissible_commands}
            prompts += [task.prompt(info, cot=True), task.prompt(info, cot=False)]
            for action in range(len(room.admissible_commands)):
                answers += [task.answer(room, action, cot=True), task.answer(room, action, cot=False)]
            observation = room.step(command)
    return Corpus(tuple(prompts), tuple(answers))


def train_tokenizer(texts: Iterable[str], vocab_size: int, special_tokens: Sequence[str]) -> Tokenizer:
    """A byte-level BPE tokenizer; `special_tokens` get ids 0, 1, 2, ... in the order given.

    `texts` must not contain the special tokens: the trainer would learn merges of their
    pieces ("<|", "|>"). Offsets are not trimmed, so the character offsets of a sequence's
    tokens tile the text without gaps (other code splits responses by offsets). A leading
    BOS token, where a family has one, is the `transformers` wrapper's job (`add_bos_token`).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    return tokenizer
