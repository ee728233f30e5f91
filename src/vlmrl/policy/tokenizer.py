"""A byte-level BPE tokenizer trained on the games' own text, for the tiny models.

The tiny models have no pretrained tokenizer to borrow, and a tokenizer fitted to what
they read and write (the prompts and the JSON answers of the four games) keeps their
sequences short, so they train fast. Byte-level BPE still encodes ANY text, so a random
model's output or an unusual prompt never hits an unknown token.

Training is deterministic: the corpus comes from fixed seeds, is iterated in a fixed
order, and the `tokenizers` BPE trainer breaks ties deterministically, so the same
arguments give a byte-identical `tokenizer.json`.
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

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
