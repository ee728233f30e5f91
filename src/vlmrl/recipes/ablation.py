"""One knob varied, everything else held: PPO runs from the same warm-up, judged on the same held-out deals.

`vlmrl bench ablation --env numberline --vary cot_lambda=0,0.25,0.5,1` runs the game's SFT
preset once, then one PPO run (the preset `<game>` plus `KEY=VALUE`) per value, each from that
SFT model with the same seed and budget, and evaluates every policy on the same deals with the
same sampling. A knob that changes what the warm-up teaches (`cot`: answers with or without a
chain of thought) is set on both stages, and each value gets its own warm-up; its SFT row is
then that warm-up's. `--vary advantage=gae,grpo,gigpo` compares the advantage estimators.

Choose settings on the validation deals (`seeds="validation"`) and report the test deals once.
The folder holds `sft/` (or `sft-<value>/`), `rl-<value>/` per value and `summary.json`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from vlmrl.infra.distributed import World
from vlmrl.infra.errors import UsageError
from vlmrl.infra.files import atomic_write_text
from vlmrl.infra.metrics import read_metrics
from vlmrl.infra.runs import RunFolder
from vlmrl.infra.seeds import HELDOUT_SEEDS
from vlmrl.policy import load_policy
from vlmrl.recipes.config import SFTConfig, TrainConfig, load_config, load_sft_config
from vlmrl.recipes.learn import build_demo_model, evaluate_stage, quiet
from vlmrl.recipes.ppo import PAPER_RESULTS, build_policy, train, trained_policy
from vlmrl.recipes.sft import sft

WARMUP_KEYS = ("cot",)
"""Knobs that change what the warm-up teaches: each value gets its own SFT run."""


def parse_vary(text: str) -> tuple[str, list[str]]:
    """`KEY=V1,V2,...` into the key and its values (as written), for a PPO config key."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    values = [value.strip() for value in raw.split(",") if value.strip()]
    if not sep or not key or not values:
        raise UsageError(f"--vary {text!r} must read KEY=VALUE,VALUE,... (e.g. cot_lambda=0,0.5,1)")
    known = [field.name for field in dataclasses.fields(TrainConfig)]
    if key not in known:
        raise UsageError(f"--vary {key!r} is not a key of `vlmrl train` (see `vlmrl train --help`)")
    if key in ("env", "out", "init", "eval_seeds"):
        raise UsageError(f"--vary {key} cannot vary: the ablation sets it for every run")
    if len(set(values)) != len(values):
        raise UsageError(f"--vary {text!r} names a value twice")
    return key, values


def slug(value: str) -> str:
    """A value as part of a folder name."""
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in value)


def ablation(
    env: str,
    vary: str,
    out: str | Path,
    episodes: int = 200,
    seeds: str = "test",
    sft_overrides: Sequence[str] = (),
    train_overrides: Sequence[str] = (),
    init: str | None = None,
    log: Callable[[str], None] = print,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Run the ablation `vary` (``KEY=V1,V2``) on `env` into the empty folder `out` (`overwrite`: an
    earlier one there is deleted); every configuration is built and checked before anything runs.
    `init`: start every PPO run from this SFT run (or model folder) instead of training a warm-up."""
    key, values = parse_vary(vary)
    warmup_varies = key in WARMUP_KEYS
    if init is not None and warmup_varies:
        raise UsageError(f"--vary {key} changes the warm-up, so it needs its own SFT runs: drop --init")
    out = Path(out)
    warmups: dict[str, SFTConfig] = {}  # folder name -> its config
    runs: list[tuple[str, str, TrainConfig]] = []  # (value, warm-up folder, PPO config)
    for value in values:
        setting = f"{key}={value}"
        warmup = f"sft-{slug(value)}" if warmup_varies else "sft"
        if init is None and warmup not in warmups:
            extra = [setting] if warmup_varies else []
            warmups[warmup] = load_sft_config(env=env, overrides=[f"out={out / warmup}", *sft_overrides, *extra])
        start = init if init is not None else str(out / warmup)
        config = load_config(
            env=env,
            overrides=[
                f"init={start}",
                f"out={out / ('rl-' + slug(value))}",
                f"eval_seeds={seeds}",
                *train_overrides,
                setting,
            ],
        )
        runs.append((value, warmup, config))
    world = World.join(runs[0][2].device)
    refusal = "replace it with --overwrite, or choose another --out"
    with world.on_main(lambda: RunFolder(out, overwrite=overwrite, refusal=refusal)):
        return _run(env, key, runs, warmups, out, episodes, seeds, init, log if world.is_main else quiet, world)


def _run(
    env: str,
    key: str,
    runs: list[tuple[str, str, TrainConfig]],
    warmups: dict[str, SFTConfig],
    out: Path,
    episodes: int,
    seeds: str,
    init: str | None,
    log: Callable[[str], None],
    world: World,
) -> dict[str, Any]:
    started = time.perf_counter()
    if any(config.model is None for config in warmups.values()):
        build_demo_model(world)
    warmup_rows: dict[str, dict[str, Any]] = {}
    for name, sft_config in warmups.items():
        log(f"supervised warm-up {name}: {sft_config.episodes} episodes of {sft_config.behaviour} demonstrations")
        clock = time.perf_counter()
        folder = sft(sft_config)
        seconds = time.perf_counter() - clock
        evaluated_as = next(config for _, warmup, config in runs if warmup == name)
        log(f"evaluating {name} on {episodes} {seeds} deals")
        stage = evaluate_stage(name, load_policy(folder / "model"), evaluated_as, episodes, seconds, world)
        warmup_rows[name] = stage.as_dict()
    if init is not None:  # the start every run shares, judged as they are: the baseline of the table
        first = runs[0][2]
        log(f"evaluating the start {init} on {episodes} {seeds} deals")
        stage = evaluate_stage("init", build_policy(first, world).eval(), first, episodes, 0.0, world)
        warmup_rows["init"] = stage.as_dict()
    rows = []
    for value, warmup, config in runs:
        log(f"PPO with {key}={value}: {config.total_steps} env steps")
        clock = time.perf_counter()
        rl_dir = train(config)
        seconds = time.perf_counter() - clock
        log(f"evaluating {key}={value} on {episodes} {seeds} deals")
        policy, _ = trained_policy(rl_dir)
        stage = evaluate_stage(f"{key}={value}", policy, config, episodes, seconds, world)
        rows.append(
            {
                "value": value,
                "warmup": warmup if init is None else None,
                "run": str(rl_dir),
                "env_steps": read_metrics(rl_dir)[-1]["env_steps"],
                **stage.as_dict(),
            }
        )
    first = HELDOUT_SEEDS[seeds]
    summary = {
        "env": env,
        "vary": key,
        "seeds": seeds,
        "episodes": episodes,
        "eval_seeds": [first, first + episodes - 1],
        "init": init,
        "warmups": warmup_rows,
        "runs": rows,
        "paper_rl4vlm": PAPER_RESULTS.get(env),
        "seconds": round(time.perf_counter() - started, 1),
    }
    if world.is_main:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary
