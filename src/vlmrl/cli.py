"""The `vlmrl` command: evaluate agents, watch an episode, measure speed.

Every subcommand has `--help`. Bad input ends in one line on stderr that names the problem
and how to fix it (exit status 2); numbers for scripts come with `--json` on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from vlmrl import __version__
from vlmrl.infra.errors import Notice, RankError, RankFailure, UsageError
from vlmrl.infra.seeds import HELDOUT_SEEDS
from vlmrl.infra.typed_config import KEYS_HEADING, keys_help, load_yaml
from vlmrl.recipes.config import BEHAVIOURS, GAME_HELP, KV_CACHES, SFTConfig, TrainConfig

SPLIT_HELP = (
    "ALFWorld's games: train (the environment's default), valid_seen (held-out games, training rooms) "
    "or valid_unseen (held-out rooms)"
)
ENV_KWARGS_HELP = (
    "the game's keyword arguments as a YAML mapping, like env_kwargs of `vlmrl train`, e.g. '{rules: rl4vlm}' "
    "(a card game under the original release's rules), '{split: valid_unseen, goal_reward: level}' or "
    "'{data: my_games, engine: thor}'"
)
OVERWRITE_HELP = (
    "the run folder holds an earlier run: delete it first (without this, a run folder that is not empty is "
    "refused; only a folder holding a vlmrl run is ever deleted)"
)
ANIMATION_SUFFIXES = (".gif", ".png", ".webp")
stderr = Console(stderr=True)


def stdout_console() -> Console:
    """Tables for people: the terminal's width, or a width that fits our tables when piped."""
    return Console() if sys.stdout.isatty() else Console(width=120)


class KeysHelpFormatter(argparse.HelpFormatter):
    """Wraps descriptions as usual, and prints the list of config keys (an epilog) as it is laid out."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        if text.startswith(KEYS_HEADING):
            return "".join(indent + line for line in text.splitlines(keepends=True))
        return super()._fill_text(text, width, indent)


PRINT_CONFIG_HELP = "print the resolved config (preset or file, then overrides) as YAML and exit; nothing runs"


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (the usage is one `--help` away)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see `{self.prog} --help`)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_ints(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers (1,8,32,64)."""
    values = tuple(positive_int(part.strip()) for part in text.split(",") if part.strip())
    if not values:
        raise argparse.ArgumentTypeError(f"expected positive integers separated by commas, got {text!r}")
    return values


def add_model_source(parser: argparse.ArgumentParser) -> None:
    """--model, or --family and --shape: the model a speed measurement runs."""
    from vlmrl.tiny.shapes import SHAPES

    parser.add_argument("--model", help="a local model folder (default: the embedded demo model)")
    parser.add_argument(
        "--family", help="instead of --model: a model of this family with random weights (llava, llava-next, ...)"
    )
    parser.add_argument(
        "--shape",
        choices=SHAPES,
        help="with --family: test or demo (the tiny models), or 7b (the family's real 7B architecture; no download)",
    )
    parser.add_argument("--device", help="cpu or cuda (default: cuda when there is one)")


def seed_int(text: str) -> int:
    """A deal's seed: a non-negative 64-bit integer."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a seed (an integer from 0), got {text!r}") from None
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"a seed must be between 0 and 2^63 - 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="vlmrl", description="Fine-tune vision-language models as decision-making agents with RL."
    )
    parser.add_argument("--version", action="version", version=f"vlmrl {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    ev = commands.add_parser(
        "eval",
        help="success rate of an agent over seeded episodes",
        description="Play N episodes on the deals of seeds S, S+1, ... and report the success "
        "rate (with a 95% Wilson interval), mean return, mean length, the rate of "
        "invalid answers, and the game's exact ceiling. With --json: one JSON "
        "object per game and agent, one per line.",
    )
    ev.add_argument(
        "--env",
        required=True,
        help=f"{GAME_HELP}; a comma-separated list or `all` (the four card games) gives one row each",
    )
    ev.add_argument(
        "--agent",
        default="expert",
        help="expert (the optimal oracle), random, always:ACTION (one action every step, e.g. always:stand), "
        "a `vlmrl train` run folder (its newest checkpoint, sampled as the run evaluates) or a `vlmrl sft` one "
        "(its model, sampled as the game's PPO preset evaluates), a comma-separated "
        "list (every row plays the same deals), or all: expert and random (default: expert)",
    )
    ev.add_argument("--episodes", type=positive_int, default=100, help="number of episodes (default: 100)")
    ev.add_argument("--seed", type=seed_int, default=0, help="seed of the first episode (default: 0)")
    ev.add_argument(
        "--invalid-action",
        choices=("random", "penalty"),
        help="what an unparseable answer becomes: a random legal action or a penalty "
        "(default: the paper's rule for the game: random for the card games, penalty for ALFWorld)",
    )
    ev.add_argument(
        "--temperature",
        type=float,
        help="sampling temperature of run agents (0: greedy; default: each run's evaluation temperature)",
    )
    ev.add_argument("--split", help=SPLIT_HELP)
    ev.add_argument("--env-kwargs", metavar="YAML", help=ENV_KWARGS_HELP)
    ev.add_argument("--json", action="store_true", help="print JSON (one object per row) instead of a table")

    play = commands.add_parser(
        "play",
        help="write an animated GIF of one episode",
        description="Play one episode and write a GIF: each frame is the observation with the "
        "agent's answer and the reward beside it.",
    )
    play.add_argument("--env", required=True, help=GAME_HELP)
    play.add_argument("--agent", default="expert", help="expert, random or always:ACTION (default: expert)")
    play.add_argument("--seed", type=seed_int, default=0, help="seed of the episode's deal (default: 0)")
    play.add_argument(
        "--out",
        default="episode.gif",
        help="the GIF to write (.gif, or an animated .png / .webp), or a folder to write GAME-seedS.gif in "
        "(default: episode.gif)",
    )
    play.add_argument("--split", help=SPLIT_HELP)
    play.add_argument("--env-kwargs", metavar="YAML", help=ENV_KWARGS_HELP)

    train = commands.add_parser(
        "train",
        help="fine-tune a VLM agent with PPO",
        description="PPO fine-tuning of a vision-language model on a game (the RL4VLM recipe). Start from a "
        "config file or a game's preset, change any key with key=value, or continue a stopped run with --resume. "
        "Writes RUN_DIR/config.yaml, metrics.jsonl, TensorBoard events, curve.png and checkpoints/step-N/.",
        epilog=keys_help(TrainConfig),
        formatter_class=KeysHelpFormatter,
    )
    source = train.add_mutually_exclusive_group()
    source.add_argument(
        "--config", help="a YAML config file, or a shipped preset's name (e.g. paper/ezpoints-llava-7b; see --help)"
    )
    source.add_argument("--env", help=f"{GAME_HELP}: use that game's shipped preset (`<game>`)")
    source.add_argument("--resume", metavar="RUN_DIR", help="continue a run from its latest intact checkpoint")
    train.add_argument("--init", metavar="SFT_RUN", help="start from a `vlmrl sft` run (or a model folder)")
    train.add_argument(
        "--overwrite",
        action="store_true",
        help=OVERWRITE_HELP,
    )
    train.add_argument("--print-config", action="store_true", help=PRINT_CONFIG_HELP)
    train.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config changes, e.g. lr=1e-4 num_envs=8 (keys below)"
    )

    sft = commands.add_parser(
        "sft",
        help="supervised warm-up on demonstrations the games write",
        description="Fine-tune on demonstrations from seeded episodes of a behaviour policy (expert, random, or "
        "epsilon-expert). Answers always describe the image correctly; thoughts and action follow the behaviour. "
        "Writes RUN_DIR/model/ (what `vlmrl train --init RUN_DIR` starts from), metrics.jsonl and summary.json.",
        epilog=keys_help(SFTConfig),
        formatter_class=KeysHelpFormatter,
    )
    sft_source = sft.add_mutually_exclusive_group()
    sft_source.add_argument("--config", help="a YAML config file, or a shipped preset's name (e.g. sft/ezpoints)")
    sft_source.add_argument("--env", help=f"{GAME_HELP}: use that game's shipped preset (`sft/<game>`)")
    sft.add_argument("--behaviour", choices=BEHAVIOURS, help="who plays the demonstrations")
    sft.add_argument("--episodes", type=positive_int, help="demonstration episodes")
    sft.add_argument(
        "--overwrite",
        action="store_true",
        help=OVERWRITE_HELP,
    )
    sft.add_argument("--print-config", action="store_true", help=PRINT_CONFIG_HELP)
    sft.add_argument(
        "overrides", nargs="*", metavar="key=value", help="config changes, e.g. lr=1e-3 epochs=3 (keys below)"
    )

    init = commands.add_parser(
        "init-model",
        help="build a tiny random VLM of a family, offline",
        description="Build a randomly initialised vision-language model of a family (no download): its BPE "
        "tokenizer is trained on the games' prompts and expert answers, and it is saved as an ordinary Hugging "
        "Face folder that `from_pretrained` and every vlmrl command load like a real checkpoint.",
    )
    init.add_argument("--family", required=True, help="llava, llava-next, qwen2-vl or qwen2.5-vl")
    init.add_argument("--size", default="test", help="test (~1M parameters, for tests) or demo (~5M, the CPU demo)")
    init.add_argument("--out", required=True, help="folder to write (replaced only if empty or a previous tiny build)")
    init.add_argument("--seed", type=seed_int, default=0, help="seed of the random weights (default: 0)")
    init.add_argument(
        "--pretrain-vision",
        type=int,
        metavar="STEPS",
        help="train the vision tower to read the games' images for STEPS steps "
        "(default: 1000 for demo, ~2 min on 2 cores; 0 for test; 0 = random tower)",
    )
    init.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")

    bench = commands.add_parser("bench", help="measure speed", description="Speed measurements.")
    what = bench.add_subparsers(dest="what", required=True, parser_class=OneLineParser)
    env = what.add_parser(
        "env",
        help="environment steps per second per game",
        description="Steps per second of each game with random actions, counting resets and "
        "the drawing of every observation image.",
    )
    env.add_argument("--env", action="append", help=f"{GAME_HELP} (repeatable; default: the four card games)")
    env.add_argument("--steps", type=positive_int, default=2000, help="steps per game (default: 2000)")
    env.add_argument("--split", help=SPLIT_HELP)
    env.add_argument("--env-kwargs", metavar="YAML", help=ENV_KWARGS_HELP)
    env.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    learn = what.add_parser(
        "learn",
        help="the preset SFT + PPO pipeline on one game, judged on held-out deals",
        description="Supervised warm-up (the preset sft/<game>), then PPO from it (the preset <game>), on the "
        "CPU by default. The model before training, after SFT and after RL are evaluated on the same held-out "
        "deals; prints their success rates beside the ceiling and the paper's, env steps and wall time.",
    )
    learn.add_argument("--env", required=True, help=GAME_HELP)
    learn.add_argument("--out", help="run folder (default: runs/learn/<game>)")
    learn.add_argument(
        "--episodes", type=positive_int, default=200, help="held-out episodes per evaluation (default: 200)"
    )
    learn.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    learn.add_argument(
        "--overwrite",
        action="store_true",
        help=OVERWRITE_HELP,
    )
    learn.add_argument(
        "--skip-untrained",
        action="store_true",
        help="leave out the untrained model's row: it never answers validly, so under the penalty rule each "
        "held-out deal runs to its step limit (minutes of garbage generation on Blackjack's 30 steps)",
    )
    learn.add_argument(
        "overrides",
        nargs="*",
        metavar="sft.key=value|rl.key=value",
        help="changes to either preset, e.g. sft.episodes=400 rl.total_steps=2048",
    )
    strategy = what.add_parser(
        "strategy",
        help="a Blackjack policy's hit/stand chart beside the optimal one",
        description="Deals a two-card hand of each kind (hard 8-18, soft 13-20) against each dealer card, "
        "samples the policy's answers there and prints how often it hits; each cell is marked with the optimal "
        "action (H/S, from the exact win probabilities) and coloured by whether the policy's usual action is it.",
    )
    strategy.add_argument(
        "--run",
        required=True,
        help="a `vlmrl train` run (its newest checkpoint), a `vlmrl sft` run (its model, prompted with or without "
        "thoughts as it was trained) or a model folder",
    )
    strategy.add_argument("--samples", type=positive_int, default=8, help="answers sampled per cell (default: 8)")
    strategy.add_argument(
        "--temperature", type=float, help="sampling temperature (default: the run's evaluation temperature, else 1.0)"
    )
    strategy.add_argument("--json", action="store_true", help="print one JSON object instead of a chart")
    rollout = what.add_parser(
        "rollout",
        help="env steps/s and generated tokens/s of lockstep rollouts against one environment at a time",
        description="Rollouts as training collects them (N environments in lockstep, one batched generate per "
        "step) for each N of --num-envs, and a loop stepping one environment at a time (the original RL4VLM's) on "
        "the same model in the same run; prints env steps/s, generated tokens/s and each N's speedup over the "
        "loop. An untrained model answers at full length (--max-new-tokens), as before any warm-up.",
    )
    add_model_source(rollout)
    rollout.add_argument("--env", default="numberline", help=f"{GAME_HELP} (default: numberline)")
    rollout.add_argument(
        "--num-envs",
        type=positive_ints,
        default=(1, 8, 32, 64),
        metavar="N1,N2,...",
        help="environments in lockstep, one row each (default: 1,8,32,64)",
    )
    rollout.add_argument(
        "--steps", type=positive_int, default=8, help="timed lockstep steps per row, as in one update (default: 8)"
    )
    rollout.add_argument(
        "--one-env-steps",
        type=positive_int,
        default=16,
        help="timed steps of the one-environment loop (default: 16)",
    )
    rollout.add_argument("--max-new-tokens", type=positive_int, default=96, help="longest answer (default: 96)")
    rollout.add_argument("--temperature", type=float, default=1.0, help="sampling temperature (default: 1.0)")
    rollout.add_argument("--no-cot", action="store_true", help="action-only prompts (default: with thoughts)")
    rollout.add_argument(
        "--kv-cache",
        choices=KV_CACHES,
        default="dynamic",
        help="generate's KV cache: grown token by token (dynamic, the default) or allocated once per call (static)",
    )
    rollout.add_argument(
        "--invalid-action",
        choices=("penalty", "random"),
        default="penalty",
        help="an unparseable answer: a penalty, the game not stepped (the default), or a random legal action, "
        "stepped as a trained policy's answer would be (so a slow game's own time is measured)",
    )
    rollout.add_argument(
        "--env-workers",
        type=int,
        default=0,
        metavar="K",
        help="worker processes that step the lockstep rows' environments in parallel (default: 0, in this process)",
    )
    rollout.add_argument(
        "--memory-bandwidth",
        type=float,
        metavar="TB/S",
        help="the accelerator's memory bandwidth, for each row's share of the decode roofline "
        "(default: 4.8 on an H200, else none)",
    )
    rollout.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    update = what.add_parser(
        "update",
        help="PPO samples/s and peak memory of updates of a given mini-batch and accumulation",
        description="One rollout of the config (a preset or file, with key=value changes), then an untimed PPO "
        "update and --repeats timed ones on it (re-scoring with gradients, backward, the optimizer's steps); "
        "prints samples/s, seconds per update and peak memory (resident memory of the updates, CUDA's largest "
        "allocation). E.g. minibatch_size=4 grad_accum=8 lora=true gradient_checkpointing=true.",
    )
    add_model_source(update)
    update.add_argument("--env", default="numberline", help=f"{GAME_HELP} (default: numberline)")
    update.add_argument("--config", help="a YAML config file or a shipped preset (default: the game's CPU preset)")
    update.add_argument("--repeats", type=positive_int, default=2, help="timed updates (default: 2)")
    update.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    update.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="changes to the config; by default one optimizer step per update of the config's mini-batch: "
        "steps_per_update = num_envs = minibatch_size x grad_accum, ppo_epochs=1",
    )
    ablation = what.add_parser(
        "ablation",
        help="PPO runs from one warm-up with one key varied, judged on the same held-out deals",
        description="The game's SFT preset once (per value, for cot), then one PPO run of the preset <game> per "
        "value of --vary, same seed and budget, each evaluated on the same held-out deals; prints a table with "
        "95% intervals. E.g. --vary cot_lambda=0,0.25,0.5,1 or --vary advantage=gae,grpo,gigpo or --vary "
        "cot=true,false.",
    )
    ablation.add_argument("--env", required=True, help=GAME_HELP)
    ablation.add_argument("--vary", required=True, metavar="KEY=V1,V2,...", help="the PPO key varied and its values")
    ablation.add_argument("--out", help="run folder (default: runs/ablation/<game>-<key>)")
    ablation.add_argument(
        "--episodes", type=positive_int, default=200, help="held-out episodes per evaluation (default: 200)"
    )
    ablation.add_argument(
        "--seeds",
        choices=tuple(HELDOUT_SEEDS),
        default="test",
        help="held-out deals: test (from 2^30; report these once) or validation (from 2^30 + 2^29; tune on these)",
    )
    ablation.add_argument("--init", help="start every PPO run from this `vlmrl sft` run instead of a new warm-up")
    ablation.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ablation.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    ablation.add_argument(
        "overrides",
        nargs="*",
        metavar="sft.key=value|rl.key=value",
        help="changes to either preset, for every run",
    )
    return parser


def progress_bar(description: str, total: int, enabled: bool) -> Progress:
    return Progress(
        TextColumn(description),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=True,
        disable=not enabled,
    )


def names_list(
    text: str, known: Sequence[str], kind: str, plural: str = "", everything: Sequence[str] | None = None
) -> list[str]:
    """A comma-separated list of names, or `all` (`everything`, by default every known name);
    unknown names are a one-line error."""
    if text.strip().lower() == "all":
        return list(known if everything is None else everything)
    names = [name.strip().lower() for name in text.split(",") if name.strip()]
    for name in names:
        if name not in known:
            raise UsageError(f"unknown {kind} {name!r}; known {plural or kind + 's'}: {', '.join(known)}")
    return names


def parse_env_kwargs(text: str | None) -> dict[str, Any]:
    """--env-kwargs: a YAML mapping read safely (the syntax of env_kwargs=... in `vlmrl train`)."""
    if text is None:
        return {}
    try:
        value = load_yaml(text)
    except yaml.YAMLError as error:
        raise UsageError(f"--env-kwargs {text!r} is not YAML: {' '.join(str(error).split())}") from None
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise UsageError(f"--env-kwargs must be a YAML mapping such as '{{split: valid_unseen}}', not {text!r}")
    return value


def env_kwargs_of(args: argparse.Namespace, games: Sequence[str]) -> dict[str, Any]:
    """The games' keyword arguments from --env-kwargs and --split, each game built once with them so
    that a keyword a game does not take, or a missing split or dependency, is one line before any episode."""
    from vlmrl.recipes.config import check_env_kwargs

    kwargs = parse_env_kwargs(args.env_kwargs)
    if args.split is not None:
        if kwargs.get("split", args.split) != args.split:
            raise UsageError(f"--split {args.split} and --env-kwargs split {kwargs['split']} disagree: give it once")
        kwargs["split"] = args.split
    if kwargs:
        for game in games:
            check_env_kwargs(game, "env kwargs", kwargs)
    return kwargs


def describe_kwargs(kwargs: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in kwargs.items())


def eval_agents(text: str) -> list[str]:
    """--agent: games-only agents by name (`all`: expert and random) and `vlmrl train` run folders;
    anything else is one line listing what an agent can be."""
    from vlmrl.evaluation.agents import AGENTS, is_agent_name

    if text.strip().lower() == "all":
        return ["expert", "random"]
    agents = []
    for entry in (entry.strip() for entry in text.split(",") if entry.strip()):
        if is_agent_name(entry.lower()):
            agents.append(entry.lower())
        elif (Path(entry) / "config.yaml").is_file():
            agents.append(entry)
        else:
            raise UsageError(
                f"unknown agent {entry!r}; an agent is one of {', '.join(AGENTS)} or a run folder of vlmrl train or sft"
            )
    return agents


def evaluate_run(run: str, env: str, args: argparse.Namespace, env_kwargs: dict[str, Any]):
    """A run's policy (a train run's newest checkpoint, an SFT run's model) on the eval's seeds, batched,
    prompted and sampled as the run is evaluated (its cot, evaluation temperature, top_p, answer length and
    invalid-answer rule, unless --temperature or --invalid-action say otherwise; an SFT run: its game's PPO
    preset's), the row named by the run folder."""
    import dataclasses

    import torch

    from vlmrl.evaluation.evaluate import summarize
    from vlmrl.games import get_task
    from vlmrl.recipes.ppo import play_as_evaluated, run_config, run_policy

    task = get_task(env)
    trained_on = get_task(run_config(run).env).name  # before any weights are read
    if trained_on != task.name:
        raise UsageError(f"run {run!r} was trained on {trained_on}, not {task.name}: use --env {trained_on}")
    policy, config = run_policy(run)
    if args.temperature is not None:
        config = dataclasses.replace(config, eval_temperature=args.temperature)
    torch.manual_seed(args.seed)  # the samples, like the deals, are the seed's: the row is reproducible
    seeds = range(args.seed, args.seed + args.episodes)
    return summarize(task, run, play_as_evaluated(policy, config, seeds, env_kwargs, args.invalid_action))


def command_eval(args: argparse.Namespace) -> None:
    from vlmrl.evaluation.agents import is_agent_name, make_agent
    from vlmrl.evaluation.evaluate import evaluate
    from vlmrl.games import game_names, get_task

    games = [
        get_task(env).name for env in names_list(args.env, game_names(optional=True), "game", everything=game_names())
    ]
    agents = eval_agents(args.agent)
    env_kwargs = env_kwargs_of(args, games)
    if args.temperature is not None:
        from vlmrl.recipes.config import TEMPERATURE

        if not TEMPERATURE.ok(args.temperature):  # the config's own rule for temperatures
            raise UsageError(f"--temperature must be {TEMPERATURE.text}, not {args.temperature}")
        if all(is_agent_name(agent) for agent in agents):
            raise UsageError("--temperature samples a run's policy; none of the agents is a run folder")
    runs = [(env, agent) for env in games for agent in agents]
    results = []
    with progress_bar("episodes", args.episodes * len(runs), sys.stderr.isatty()) as bar:
        job = bar.add_task("episodes", total=args.episodes * len(runs))
        for i, (env, agent) in enumerate(runs):
            if not is_agent_name(agent):
                results.append(evaluate_run(agent, env, args, env_kwargs))
                bar.update(job, completed=(i + 1) * args.episodes)
                continue
            results.append(
                evaluate(
                    make_agent(agent, get_task(env), args.seed),
                    args.episodes,
                    args.seed,
                    progress=lambda done, before=i * args.episodes: bar.update(job, completed=before + done),
                    invalid_action=args.invalid_action,
                    env_kwargs=env_kwargs,
                )
            )
    if args.json:
        for result in results:
            print_json(args, result.as_dict() | ({"env_kwargs": env_kwargs} if env_kwargs else {}))
        return
    title = f"{args.episodes} episodes per row, seeds {args.seed}..{args.seed + args.episodes - 1}"
    table = Table(title=title + (f", {describe_kwargs(env_kwargs)}" if env_kwargs else ""))
    for column in ("game", "agent", "success", "95% CI", "ceiling", "return", "length", "invalid"):
        table.add_column(column, justify="right")
    for r in results:
        low, high = r.success_ci95
        table.add_row(
            r.env,
            r.agent,
            f"{r.success_rate:.1%}",
            f"{low:.1%}-{high:.1%}",
            f"{r.ceiling:.1%}",
            f"{r.mean_return:+.2f}",
            f"{r.mean_length:.2f}",
            f"{r.invalid_rate:.1%}",
        )
    stdout_console().print(table)
    for r in results:
        if r.per_type:
            stdout_console().print(per_type_table(r))


def per_type_table(result) -> Table:
    """Success per task type (ALFWorld's six), as the paper reports it."""
    table = Table(title=f"{result.env}, {result.agent} agent: success per task type")
    for column in ("task type", "episodes", "success"):
        table.add_column(column, justify="right")
    for task_type, row in result.per_type.items():
        table.add_row(task_type, str(int(row["episodes"])), f"{row['success_rate']:.1%}")
    return table


def command_play(args: argparse.Namespace) -> None:
    from vlmrl.evaluation.agents import make_agent
    from vlmrl.evaluation.evaluate import play_episode
    from vlmrl.evaluation.play import write_gif
    from vlmrl.games import get_task, make_text_env

    task = get_task(args.env)
    out = Path(args.out)
    if out.is_dir():
        out = out / f"{task.name}-seed{args.seed}.gif"
    if out.suffix.lower() not in ANIMATION_SUFFIXES:
        raise UsageError(f"--out {args.out!r} must name a .gif (or an animated .png or .webp) file, or a folder")
    agent = make_agent(args.agent, task, args.seed)
    env = make_text_env(task, env_kwargs_of(args, [task.name]))
    episode = play_episode(env, agent, args.seed, record=True)
    path = write_gif(episode.frames or [], out)
    outcome = "success" if episode.success else "failure"
    print(
        f"{path}: {task.name}, {args.agent} agent, seed {args.seed}: {outcome}, "
        f"return {episode.ret:+g} in {episode.length} steps"
    )


def command_train(args: argparse.Namespace) -> None:
    overrides = args.overrides + ([f"init={args.init}"] if args.init else [])
    if args.print_config:
        from vlmrl.infra.typed_config import config_yaml
        from vlmrl.recipes.config import resolved_train_config

        print(config_yaml(resolved_train_config(args.config, args.env, overrides, args.resume)), end="")
        return
    from vlmrl.recipes.ppo import main_train

    run_dir = main_train(args.config, args.env, overrides, args.resume, args.overwrite)
    print(f"run written to {run_dir}")


def command_sft(args: argparse.Namespace) -> None:
    from vlmrl.infra.typed_config import config_yaml
    from vlmrl.recipes.config import load_sft_config
    from vlmrl.recipes.sft import sft

    if args.config is None and args.env is None:
        raise UsageError("give --config FILE or --env NAME")
    overrides = list(args.overrides)
    if args.behaviour:
        overrides.append(f"behaviour={args.behaviour}")
    if args.episodes:
        overrides.append(f"episodes={args.episodes}")
    config = load_sft_config(args.config, args.env, overrides)
    if args.print_config:
        print(config_yaml(config), end="")
        return
    run_dir = sft(config, overwrite=args.overwrite)
    summary = json.loads((run_dir / "summary.json").read_text())
    print(
        f"{run_dir}/model written: {summary['examples']} examples, {summary['steps']} steps; held-out "
        f"valid answers {summary.get('sft/valid_rate', float('nan')):.0%}"
        + (f", fields read right {summary['sft/field_accuracy']:.0%}" if "sft/field_accuracy" in summary else "")
        + (
            f", every field right in {summary['sft/read_all_fields']:.0%} of answers"
            if "sft/read_all_fields" in summary
            else ""
        )
        + (
            f" (the demonstrated action in {summary['sft/action_agreement_when_read']:.0%} of those)"
            if "sft/action_agreement_when_read" in summary
            else ""
        )
    )


def command_init_model(args: argparse.Namespace) -> None:
    from vlmrl.policy.families import FAMILIES
    from vlmrl.tiny.build import DEMO_VISION_STEPS, SIZES, build_tiny_model, count_parameters, vision_progress
    from vlmrl.tiny.vision import read_pretraining

    names_list(args.family, list(FAMILIES), "family", "families")
    names_list(args.size, list(SIZES), "size")
    steps = args.pretrain_vision
    if steps is None:
        steps = DEMO_VISION_STEPS if args.size == "demo" else 0
    if steps < 0:
        raise UsageError(f"--pretrain-vision must be 0 or more steps, not {steps}")
    try:
        with vision_progress(steps, "vision tower") if steps else contextlib.nullcontext() as progress:
            folder = build_tiny_model(
                args.family, args.size, args.out, seed=args.seed, pretrain_vision=steps, progress=progress
            )
    except ValueError as error:
        raise UsageError(str(error)) from None
    pretraining = read_pretraining(folder)
    summary = {
        "out": str(folder),
        "family": args.family,
        "size": args.size,
        "seed": args.seed,
        "parameters": count_parameters(folder),
        "vision_pretraining": pretraining,
    }
    if args.json:
        print_json(args, summary)
        return
    weights = "random weights"
    if pretraining is not None:
        worst = min(pretraining["heldout_accuracy"].items(), key=lambda item: item[1])
        weights = (
            f"random weights, vision tower pretrained {steps} steps on the games' images "
            f"(held-out: every label >= {worst[1]:.0%}, lowest {worst[0]})"
        )
    print(f"{folder}: tiny {args.family} ({args.size}), {summary['parameters']:,} parameters, {weights}")


def command_bench_env(args: argparse.Namespace) -> None:
    from vlmrl.evaluation.bench import env_steps_per_second
    from vlmrl.games import game_names, get_task

    names = [get_task(name).name for name in (args.env or game_names())]
    env_kwargs = env_kwargs_of(args, names)
    rows = [env_steps_per_second(name, args.steps, env_kwargs=env_kwargs) for name in names]
    if args.json:
        print_json(args, {"bench": "env", "results": rows} | ({"env_kwargs": env_kwargs} if env_kwargs else {}))
        return
    title = f"environment speed ({args.steps} random-action steps per game, images drawn)"
    table = Table(title=title + (f", {describe_kwargs(env_kwargs)}" if env_kwargs else ""))
    for column in ("game", "steps/s", "episodes", "seconds"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["env"], f"{row['steps_per_second']:,.0f}", str(row["episodes"]), f"{row['seconds']:.2f}")
    stdout_console().print(table)


def measured_policy(args: argparse.Namespace, config: TrainConfig | None = None):
    """The policy a speed measurement runs: --model's (default: the demo model) or a random model of
    --family at --shape; with `config`, its LoRA, trained parts and checkpointing."""
    from vlmrl.policy import LoraSettings, load_policy
    from vlmrl.tiny import model_or_demo
    from vlmrl.tiny.shapes import shaped_policy

    settings: dict[str, Any] = {"lora": None, "device": args.device}
    if config is not None:
        settings.update(
            lora=LoraSettings(config.lora_rank, config.lora_alpha, config.lora_dropout) if config.lora else None,
            trainable=config.trainable,
            gradient_checkpointing=config.gradient_checkpointing,
        )
    if args.family is None and args.shape is None:
        return load_policy(model_or_demo(args.model), **settings)
    if args.model is not None or args.family is None or args.shape is None:
        raise UsageError("give --model FOLDER, or --family with --shape (not both)")
    from vlmrl.policy import FAMILIES

    if args.family not in FAMILIES:
        raise UsageError(f"unknown model family {args.family!r}; supported families: {', '.join(FAMILIES)}")
    return shaped_policy(args.family, args.shape, **settings)


def command_bench_rollout(args: argparse.Namespace) -> None:
    from vlmrl.games import get_task
    from vlmrl.recipes.throughput import Sampling, known_bandwidth, rollout_throughput

    task = get_task(args.env)
    sampling = Sampling(
        args.temperature, 1.0, args.max_new_tokens, cot=not args.no_cot, invalid_action=args.invalid_action
    )
    policy = measured_policy(args)
    policy.kv_cache = args.kv_cache
    if args.memory_bandwidth is not None and not args.memory_bandwidth > 0:
        raise UsageError(f"--memory-bandwidth must be a positive number of TB/s, not {args.memory_bandwidth}")
    if args.env_workers < 0:
        raise UsageError(f"--env-workers must be 0 (in this process) or a number of processes, not {args.env_workers}")
    bandwidth = args.memory_bandwidth * 1e12 if args.memory_bandwidth else known_bandwidth(policy.device)
    log = lambda line: print(f"bench rollout: {line}", file=sys.stderr, flush=True)  # noqa: E731
    result = rollout_throughput(
        policy, task, args.num_envs, args.steps, args.one_env_steps, sampling, 0, log, bandwidth, args.env_workers
    )
    result = {"bench": "rollout", "model": describe_model(args), "device": str(policy.device), **result}
    if args.json:
        print_json(args, result)
        return
    table = Table(
        title=f"rollouts on {task.name}, {describe_model(args)} on {policy.device} ({args.kv_cache} KV cache, "
        f"environments {'in ' + str(args.env_workers) + ' worker processes' if args.env_workers else 'in process'}, "
        f"{result['attention']} attention): "
        f"answers up to {args.max_new_tokens} tokens at temperature {args.temperature}"
    )
    roofline = result["memory_bandwidth"] is not None
    columns = ["environments", "env steps/s", "tokens/s", "speedup", "decode GB/s", "env steps", "seconds", "games s"]
    for column in [*columns, *(["roofline"] if roofline else [])]:
        table.add_column(column, justify="right")
    one = {**result["one_env"], "speedup": 1.0}
    for name, row in [("1 at a time", one), *((f"{r['num_envs']} in lockstep", r) for r in result["rows"])]:
        cells = [
            name, f"{row['env_steps_per_second']:.2f}", f"{row['tokens_per_second']:.0f}", f"{row['speedup']:.1f}x",
            f"{row['decode_bytes_per_second'] / 1e9:.1f}", str(row["env_steps"]), f"{row['seconds']:.1f}",
            f"{row['env_seconds']:.1f}",
        ]  # fmt: skip
        table.add_row(*cells, *([f"{row['roofline_fraction']:.1%}"] if roofline else []))
    stdout_console().print(table)
    print(f"peak memory: {memory_line(result)}")


def command_bench_update(args: argparse.Namespace) -> None:
    from vlmrl.recipes.config import load_config
    from vlmrl.recipes.throughput import update_throughput

    preset, env = args.config, None if args.config else args.env
    device = [f"device={args.device}"] if args.device is not None else []
    asked = load_config(preset, env, [*args.overrides, *device])  # validated as given, for its mini-batch
    per_update = asked.minibatch_size * asked.grad_accum
    one_step = [f"steps_per_update={per_update}", f"num_envs={per_update}", "ppo_epochs=1", "eval_every=0"]
    config = load_config(preset, env, [*one_step, "tensorboard=false", "init=null", *args.overrides, *device])
    log = lambda line: print(f"bench update: {line}", file=sys.stderr, flush=True)  # noqa: E731
    result = update_throughput(config, measured_policy(args, config), args.repeats, progress=log)
    result = {"bench": "update", "model": describe_model(args), **result}
    if args.json:
        print_json(args, result)
        return
    print(
        f"PPO update on {result['env']}, {describe_model(args)} ({result['parameters']:,} parameters, "
        f"{result['trainable_parameters']:,} trained, {result['dtype']} on {result['device']}; "
        f"mini-batch {result['minibatch_size']} x accumulation {result['grad_accum']}, "
        f"{result['samples_per_update']} samples of {result['mean_prompt_tokens']:.0f} prompt and "
        f"{result['mean_response_tokens']:.0f} answer tokens on average):"
    )
    print(
        f"  {result['samples_per_second']:.2f} samples/s, {result['seconds_per_update']:.2f} s per update "
        f"({result['optimizer_steps_per_update']} optimizer steps); peak memory {memory_line(result)}"
    )


def describe_model(args: argparse.Namespace) -> str:
    if args.family is not None:
        return f"{args.family} {args.shape} (random weights)"
    return args.model or "the demo model"


def memory_line(result: dict) -> str:
    text = f"resident {result['cpu_peak_rss_bytes'] / 2**30:.2f} GiB"
    if result.get("cuda_max_allocated_bytes") is not None:
        text += f", CUDA {result['cuda_max_allocated_bytes'] / 2**30:.2f} GiB allocated at most"
    return text


def stage_overrides(overrides: Sequence[str]) -> dict[str, list[str]]:
    """`sft.key=value` and `rl.key=value` arguments, by stage."""
    stages: dict[str, list[str]] = {"sft": [], "rl": []}
    for override in overrides:
        stage, _, rest = override.partition(".")
        if stage not in stages or "=" not in rest:
            raise UsageError(f"override {override!r} must read sft.key=value or rl.key=value")
        stages[stage].append(rest)
    return stages


def command_bench_ablation(args: argparse.Namespace) -> None:
    from vlmrl.games import get_task
    from vlmrl.recipes.ablation import ablation, parse_vary, slug

    stages = stage_overrides(args.overrides)
    name = get_task(args.env).name
    key, _ = parse_vary(args.vary)
    summary = ablation(
        name,
        args.vary,
        args.out or f"runs/ablation/{name}-{slug(key)}",
        args.episodes,
        args.seeds,
        stages["sft"],
        stages["rl"],
        init=args.init,
        overwrite=args.overwrite,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.json:
        print_json(args, summary)
        return
    stdout_console().print(ablation_table(summary))


def ablation_table(summary: dict) -> Table:
    """Each value's success after RL beside its warm-up's, with intervals, episode length and time."""
    table = Table(
        title=f"{summary['env']}: {summary['vary']} varied, {summary['episodes']} {summary['seeds']} deals per row "
        f"({summary['seconds'] / 60:.1f} min in all)"
    )
    for column in ("run", "success", "95% CI", "mean length", "invalid answers", "training time"):
        table.add_column(column, justify="right")

    def add(label: str, row: dict) -> None:
        low, high = row["success_ci95"]
        table.add_row(
            label,
            f"{row['success_rate']:.1%}",
            f"{low:.1%}-{high:.1%}",
            f"{row['mean_length']:.2f}",
            f"{row['invalid_rate']:.1%}",
            f"{row['seconds'] / 60:.1f} min",
        )

    for name, row in summary["warmups"].items():
        add(f"the start ({summary['init']})" if name == "init" else f"after SFT ({name})", row)
    for row in summary["runs"]:
        add(f"{summary['vary']}={row['value']}", row)
    if summary.get("paper_rl4vlm") is not None:
        table.add_row("RL4VLM, LLaVA-7B (paper)", f"{summary['paper_rl4vlm']:.1%}", "", "", "", "")
    return table


def command_bench_strategy(args: argparse.Namespace) -> None:
    from vlmrl.evaluation.strategy import UPCARDS, blackjack_chart
    from vlmrl.policy import load_policy
    from vlmrl.recipes.ppo import run_policy

    run = Path(args.run)
    if (run / "config.yaml").is_file():  # a train or SFT run: prompted and sampled as it is evaluated
        policy, config = run_policy(run)
        if config.env != "blackjack":
            raise UsageError(f"{args.run!r} is a {config.env} run; the strategy chart is Blackjack's")
        temperature, cot, max_new_tokens = config.heldout_temperature, config.cot, config.max_new_tokens
    else:
        temperature, cot, max_new_tokens = 1.0, True, 96
        policy = load_policy(run / "model" if (run / "model" / "config.json").is_file() else run)
    if args.temperature is not None:
        temperature = args.temperature
    chart = blackjack_chart(policy.eval(), temperature, args.samples, max_new_tokens, cot)
    if args.json:
        print_json(args, {"bench": "strategy", "run": str(run), **chart.as_dict()})
        return
    table = Table(
        title=f"{run}: share of hits per cell ({args.samples} answers at temperature {temperature:g}); "
        f"H/S: the optimal action; green: the policy's usual action is optimal ({chart.agreement:.0%} of cells)"
    )
    table.add_column("hand")
    for upcard in UPCARDS:
        table.add_column(upcard, justify="right")
    hands = list(dict.fromkeys(cell.hand for cell in chart.cells))
    for hand in hands:
        texts = []
        for cell in (c for c in chart.cells if c.hand == hand):
            letter = "H" if cell.optimal == "hit" else "S"
            if cell.hit_rate is None:
                texts.append(f"{letter} --")
                continue
            colour = "green" if cell.agrees else "red"
            texts.append(f"[{colour}]{letter} {cell.hit_rate:.0%}[/{colour}]")
        table.add_row(hand, *texts)
    stdout_console().print(table)
    if cot:
        when_read = chart.optimal_when_read
        print(
            f"perception: {chart.reading:.0%} of answers state the hand's total and the dealer's card right; "
            "reasoning: "
            + (f"{when_read:.0%} of those take the optimal action" if when_read is not None else "none read right")
        )


def command_bench_learn(args: argparse.Namespace) -> None:
    from vlmrl.games import get_task
    from vlmrl.recipes.learn import learn

    stages = stage_overrides(args.overrides)
    name = get_task(args.env).name
    summary = learn(
        name,
        args.out or f"runs/learn/{name}",
        args.episodes,
        stages["sft"],
        stages["rl"],
        untrained=not args.skip_untrained,
        overwrite=args.overwrite,
        log=lambda line: print(line, file=sys.stderr, flush=True),
    )
    if args.json:
        print_json(args, summary)
        return
    stdout_console().print(learn_table(summary))
    print(f"runs, curve.png and episode.gif under {Path(summary['run']['rl']).parent}")


def learn_table(summary: dict) -> Table:
    """The success of each stage beside the ceiling and the paper's RL4VLM."""
    minutes = summary["seconds"] / 60
    env_kwargs = summary.get("eval_env_kwargs")
    table = Table(
        title=f"{summary['env']}{f' ({describe_kwargs(env_kwargs)})' if env_kwargs else ''}: "
        f"{summary['episodes']} held-out episodes per row "
        f"(PPO {summary['env_steps']:,} env steps; {minutes:.1f} min in all)"
    )
    for column in ("model", "success", "95% CI", "invalid answers", "training time"):
        table.add_column(column, justify="right")
    names = {"untrained": "untrained", "sft": "after SFT", "rl": "after SFT + RL"}
    for stage in summary["stages"]:
        low, high = stage["success_ci95"]
        table.add_row(
            names[stage["stage"]],
            f"{stage['success_rate']:.1%}",
            f"{low:.1%}-{high:.1%}",
            f"{stage['invalid_rate']:.1%}",
            f"{stage['seconds']:.0f} s" if stage["stage"] != "untrained" else "",
        )
    table.add_row("ceiling (exact)", f"{summary['ceiling']:.1%}", "", "", "")
    if summary.get("paper_rl4vlm") is not None:
        table.add_row("RL4VLM, LLaVA-7B (paper)", f"{summary['paper_rl4vlm']:.1%}", "", "", "")
    return table


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line, with `key=value` overrides accepted anywhere after the command (argparse
    alone rejects one placed after an option such as --init)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and not any(item.startswith("-") or "=" not in item for item in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def quiet_writer_threads(fallback: Callable[[threading.ExceptHookArgs], Any]) -> Callable:
    """A `threading.excepthook`: TensorBoard's writer thread prints a traceback when a write fails,
    then the training thread gets the same error (reported as one line), so the thread's copy is
    dropped; anything else goes to `fallback`."""

    def hook(args: threading.ExceptHookArgs) -> None:
        if type(args.thread).__name__ != "_AsyncWriterThread" or not isinstance(args.exc_value, OSError):
            fallback(args)

    return hook


def notices_as_lines(fallback: Callable) -> Callable:
    """A `warnings.showwarning`: a `Notice` is one line on stderr, any other warning goes to `fallback`."""

    def show(message, category, *rest) -> None:
        if issubclass(category, Notice):
            print(f"vlmrl: note: {message}", file=sys.stderr, flush=True)
        else:
            fallback(message, category, *rest)

    return show


def launcher_rank() -> int:
    """The rank a launcher (torchrun, accelerate launch) gave this process; 0 without one."""
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0  # World.from_environment says what is wrong with it, in one line


def main(argv: Sequence[str] | None = None) -> int:
    thread_hook = threading.excepthook
    threading.excepthook = quiet_writer_threads(thread_hook)
    helper = launcher_rank() > 0  # rank 0 speaks for every process; the others say only their own errors
    try:
        with (
            warnings.catch_warnings(),
            open(os.devnull, "w") as silent,
            contextlib.redirect_stdout(silent) if helper else contextlib.nullcontext(),
        ):
            warnings.simplefilter("ignore" if helper else "always", Notice)
            warnings.showwarning = notices_as_lines(warnings.showwarning)
            # peft still calls transformers' deprecated name at every model load: noise for a user
            warnings.filterwarnings(
                "ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning
            )
            return run_command(argv)
    finally:
        threading.excepthook = thread_hook


def run_command(argv: Sequence[str] | None) -> int:
    """The command's exit code; a process that was one of several (a training command under a launcher)
    then leaves its process group and ends here (`end_process` says why it skips the interpreter's exit)."""
    try:
        code = errors_as_exit_codes(argv)
    except BaseException:
        leave_any_world()  # the traceback is the interpreter's to print
        raise
    if leave_any_world():
        sys.modules["vlmrl.infra.distributed"].end_process(code)
    return code


def leave_any_world() -> bool:
    """Leave the process group a training command joined, if any (torch is not imported for the rest)."""
    distributed = sys.modules.get("vlmrl.infra.distributed")
    return distributed is not None and distributed.leave_world()


def errors_as_exit_codes(argv: Sequence[str] | None) -> int:
    try:
        args = parse_args(argv)
        with json_alone_on_stdout(args):
            dispatch(args)
    except RankFailure as error:
        print(f"vlmrl: error: {error}; resume from the last checkpoint with --resume", file=sys.stderr)
        return 1
    except UsageError as error:
        if launcher_rank() == 0 or isinstance(error, RankError):  # the same on every rank: rank 0 says it once
            print(f"vlmrl: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"vlmrl: error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("vlmrl: interrupted", file=sys.stderr)
        return 130
    return 0


def dispatch(args: argparse.Namespace) -> None:
    if args.command == "eval":
        command_eval(args)
    elif args.command == "play":
        command_play(args)
    elif args.command == "train":
        command_train(args)
    elif args.command == "sft":
        command_sft(args)
    elif args.command == "init-model":
        command_init_model(args)
    elif args.command == "bench" and args.what == "env":
        command_bench_env(args)
    elif args.command == "bench" and args.what == "learn":
        command_bench_learn(args)
    elif args.command == "bench" and args.what == "ablation":
        command_bench_ablation(args)
    elif args.command == "bench" and args.what == "strategy":
        command_bench_strategy(args)
    elif args.command == "bench" and args.what == "rollout":
        command_bench_rollout(args)
    elif args.command == "bench" and args.what == "update":
        command_bench_update(args)


@contextlib.contextmanager
def json_alone_on_stdout(args: argparse.Namespace) -> Iterator[None]:
    """With --json, stdout carries the JSON alone: whatever else is printed meanwhile (progress, notes,
    a library's log lines, such as DeepSpeed's on import) goes to stderr. `print_json` writes the JSON."""
    args.json_stream = sys.stdout
    if not getattr(args, "json", False):
        yield
        return
    with contextlib.redirect_stdout(sys.stderr):
        yield


def print_json(args: argparse.Namespace, value: Any) -> None:
    print(json.dumps(value), file=args.json_stream, flush=True)


if __name__ == "__main__":
    sys.exit(main())
