"""The knobs of a PPO run: one dataclass whose fields carry their help text, YAML presets in
`configs/`, and `key=value` overrides on the command line.

Anything wrong (an unknown key, a value of the wrong type, an impossible value) is one
`UsageError` line naming the key and what would be right, raised before any work starts.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from vlmrl.errors import UsageError

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs"
"""The presets shipped with the source tree (`configs/<game>.yaml`, `configs/paper/...`)."""


GAME_HELP = "game: numberline, ezpoints, points24, blackjack or alfworld (an optional extra)"
"""The games' names for help texts (kept here, not derived from `vlmrl.games`, so that the
command line's start-up imports no game)."""


def knob(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


@dataclass
class TrainConfig:
    # --- what to train
    env: str = knob("numberline", GAME_HELP)
    model: str | None = knob(None, "local Hugging Face model folder; empty: the embedded `demo` tiny model")
    init: str | None = knob(None, "start from a `vlmrl sft` run (its model/ folder) or a model folder; replaces model")
    seed: int = knob(0, "seed of everything: deals, sampling, mini-batches")
    out: str = knob("runs/{env}", "run directory; {env} and {seed} are filled in")
    device: str = knob("auto", "auto (cuda if available), cpu or cuda")
    # --- the policy
    lora: bool = knob(True, "train LoRA adapters (true) or fine-tune the trained parts fully (false)")
    lora_rank: int = knob(128, "LoRA rank r")
    lora_alpha: int = knob(256, "LoRA alpha")
    lora_dropout: float = knob(0.05, "LoRA dropout")
    trainable: str = knob("all", "parts that train: language, language+projector or all")
    gradient_checkpointing: bool = knob(False, "recompute activations in the backward pass to save memory")
    cot: bool = knob(True, "ask for a chain of thought before the action (false: the action alone)")
    cot_lambda: float = knob(0.5, "scale of the chain-of-thought log-prob in the PPO log-prob, in [0, 1]")
    temperature: float = knob(0.2, "sampling temperature (0: greedy)")
    top_p: float = knob(1.0, "nucleus sampling threshold")
    max_new_tokens: int = knob(256, "longest answer, in tokens")
    invalid_action: str | None = knob(
        None, "an unparseable answer becomes: random (a random legal action) or penalty (null: the game's own rule)"
    )
    invalid_penalty: float = knob(-1.0, "reward of an unparseable answer when invalid_action is penalty")
    env_kwargs: dict | None = knob(  # noqa: RUF009 (the default is None)
        None, "keyword arguments of the training environments (null: the game's defaults), e.g. {split: train}"
    )
    eval_env_kwargs: dict | None = knob(  # noqa: RUF009 (the default is None)
        None, "keyword arguments of the evaluation environments (null: env_kwargs), e.g. {split: valid_unseen}"
    )
    # --- rollouts
    num_envs: int = knob(4, "environments stepped in lockstep (one batched generate per step)")
    steps_per_update: int = knob(512, "environment steps collected per PPO update (all environments together)")
    total_steps: int = knob(15_000, "environment steps of the whole run")
    # --- PPO
    gamma: float = knob(0.9, "discount factor")
    gae_lambda: float = knob(0.95, "GAE lambda")
    ppo_epochs: int = knob(4, "passes over each rollout")
    minibatch_size: int = knob(1, "samples per forward pass")
    grad_accum: int = knob(128, "mini-batches whose gradients are summed per optimizer step")
    clip: float = knob(0.1, "PPO ratio clip")
    value_clip: float | None = knob(0.1, "value clip around the old value (null: no clipping)")
    value_coef: float = knob(0.5, "weight of the value loss")
    value_trains_model: bool = knob(
        True, "the value loss trains the model's parts too (the paper); false: the value head alone"
    )
    entropy_coef: float = knob(0.0, "weight of the entropy bonus (0: off, as in the paper)")
    kl_coef: float = knob(0.0, "weight of the per-token KL to the initial policy (0: off, as in the paper)")
    normalize_advantages: bool = knob(True, "normalise advantages over the buffer")
    lr: float = knob(1e-5, "Adam learning rate at the start of the cosine schedule")
    value_lr: float | None = knob(None, "learning rate of the value head (null: lr); same cosine schedule")
    lr_min: float = knob(1e-9, "learning rate at the end of the cosine schedule")
    adam_eps: float = knob(1e-7, "Adam epsilon")
    max_grad_norm: float = knob(0.01, "gradient norm clip")
    # --- bookkeeping
    success_window: int = knob(100, "training success rate is over the last K finished episodes")
    eval_every: int = knob(5, "evaluate on held-out seeds every K updates (0: never)")
    eval_episodes: int = knob(50, "episodes per evaluation")
    eval_temperature: float | None = knob(None, "sampling temperature of evaluations (null: as in training)")
    checkpoint_every: int = knob(5, "write a checkpoint every K updates")
    keep_checkpoints: int = knob(3, "checkpoints kept (older ones are deleted)")
    tensorboard: bool = knob(True, "also write TensorBoard event files")

    @property
    def rollout_length(self) -> int:
        """Steps per environment per update."""
        return self.steps_per_update // self.num_envs

    @property
    def heldout_temperature(self) -> float:
        """Sampling temperature of held-out evaluations."""
        return self.temperature if self.eval_temperature is None else self.eval_temperature

    @property
    def heldout_env_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of the evaluation environments (ALFWorld's held-out split, say)."""
        return (self.env_kwargs if self.eval_env_kwargs is None else self.eval_env_kwargs) or {}

    @property
    def updates(self) -> int:
        return max(1, self.total_steps // (self.rollout_length * self.num_envs))

    def run_dir(self) -> Path:
        return Path(self.out.format(env=self.env, seed=self.seed))


Config = typing.TypeVar("Config")


def _fields(kind: type) -> dict[str, Any]:
    return {f.name: f for f in dataclasses.fields(kind)}


def _allowed_types(hint: Any) -> tuple[type, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return tuple(t for t in typing.get_args(hint))
    return (hint,)


def coerce(kind: type, key: str, value: Any, source: str) -> Any:
    """A value of the field's type, or a one-line error naming the key."""
    fields = _fields(kind)
    if key not in fields:
        known = ", ".join(fields)
        raise UsageError(f"unknown key {key!r} in {source}; known keys: {known}")
    allowed = _allowed_types(typing.get_type_hints(kind)[key])
    if value is None:
        if type(None) in allowed:
            return None
        raise UsageError(f"{key} in {source} cannot be null; expected {allowed[0].__name__}")
    for kind in allowed:
        if kind is float and isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return value
        if kind is bool and isinstance(value, bool):
            return value
        if kind is str and isinstance(value, str | int | float) and not isinstance(value, bool):
            return str(value)
        if kind is dict and isinstance(value, dict):
            return {str(k): v for k, v in value.items()}
    names = " or ".join(k.__name__ if k is not type(None) else "null" for k in allowed)
    raise UsageError(f"{key} in {source} must be {names}, not {value!r}")


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value`, the value read as YAML (so 0.1 is a number, true a boolean, null nothing)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"override {text!r} is not key=value (e.g. lr=1e-5)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)
    return key.strip(), value


def _looks_numeric(text: str) -> bool:
    """YAML 1.1 reads 1e-5 as a string; a user means a number."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as error:
        raise UsageError(f"cannot read config {str(path)!r}: {error.strerror}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"config {str(path)!r} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config {str(path)!r} must be a mapping of key: value lines")
    return data


def read_config(
    kind: type[Config], path: str | Path | None, env: str | None, overrides: list[str], preset_dir: Path
) -> Config:
    """A config of `kind` from a YAML file, or a game's preset in `preset_dir`, plus overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        source = Path(path)
        for key, value in read_yaml(source).items():
            values[key] = coerce(kind, str(key), value, str(source))
    elif env is not None:
        from vlmrl.games import get_task

        name = get_task(env).name
        preset = preset_dir / f"{name}.yaml"
        if preset.is_file():
            for key, value in read_yaml(preset).items():
                values[key] = coerce(kind, str(key), value, str(preset))
        values["env"] = name
    for text in overrides:
        key, value = parse_override(text)
        values[key] = coerce(kind, key, value, "the command line")
    return kind(**values)


def load_config(path: str | Path | None = None, env: str | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A validated PPO config from a YAML file, or the preset of a game, plus `key=value` overrides."""
    config = read_config(TrainConfig, path, env, list(overrides), CONFIG_DIR)
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Impossible values, each a one-line error naming the key."""
    from vlmrl.games import get_task
    from vlmrl.policy.parts import TRAINABLE_CHOICES

    get_task(config.env)

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UsageError(message)

    need(config.trainable in TRAINABLE_CHOICES, f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}")
    need(
        config.invalid_action in (None, "random", "penalty"),
        "invalid_action must be random or penalty (or null: the game's own rule)",
    )
    need(
        config.device in ("auto", "cpu", "cuda") or config.device.startswith("cuda:"),
        "device must be auto, cpu or cuda",
    )
    for key in ("gamma", "gae_lambda", "cot_lambda"):
        need(0.0 <= getattr(config, key) <= 1.0, f"{key} must be between 0 and 1, not {getattr(config, key)}")
    need(0.0 < config.top_p <= 1.0, f"top_p must be in (0, 1], not {config.top_p}")
    need(0.0 <= config.lora_dropout < 1.0, f"lora_dropout must be in [0, 1), not {config.lora_dropout}")
    for key in (
        "lora_rank",
        "lora_alpha",
        "num_envs",
        "max_new_tokens",
        "ppo_epochs",
        "minibatch_size",
        "grad_accum",
        "success_window",
        "eval_episodes",
        "checkpoint_every",
        "keep_checkpoints",
    ):
        need(getattr(config, key) >= 1, f"{key} must be at least 1, not {getattr(config, key)}")
    for key in ("clip", "lr", "max_grad_norm", "adam_eps"):
        need(getattr(config, key) > 0, f"{key} must be positive, not {getattr(config, key)}")
    for key in ("temperature", "value_coef", "entropy_coef", "kl_coef", "lr_min", "eval_every"):
        need(getattr(config, key) >= 0, f"{key} must not be negative, not {getattr(config, key)}")
    need(config.value_clip is None or config.value_clip > 0, "value_clip must be positive or null")
    need(config.eval_temperature is None or config.eval_temperature >= 0, "eval_temperature must not be negative")
    need(config.value_lr is None or config.value_lr > 0, "value_lr must be positive (or null: the same as lr)")
    need(config.lr_min <= config.lr, f"lr_min ({config.lr_min}) must not exceed lr ({config.lr})")
    need(
        config.steps_per_update >= config.num_envs,
        f"steps_per_update ({config.steps_per_update}) must be at least num_envs ({config.num_envs})",
    )
    need(
        config.steps_per_update % config.num_envs == 0,
        f"steps_per_update ({config.steps_per_update}) must be a multiple of num_envs ({config.num_envs})",
    )
    need(
        config.total_steps >= config.steps_per_update,
        f"total_steps ({config.total_steps}) must be at least steps_per_update ({config.steps_per_update})",
    )
    check_env_kwargs(config.env, "env_kwargs", config.env_kwargs)
    if config.eval_env_kwargs is not None:
        check_env_kwargs(config.env, "eval_env_kwargs", config.eval_env_kwargs)


def check_env_kwargs(env: str, key: str, kwargs: dict | None) -> None:
    """Build the game once with `kwargs`, so that a wrong keyword, a missing games folder or a
    missing optional dependency is one line before any work starts, not after the model loads."""
    from vlmrl.games import make_env

    try:
        make_env(env, **(kwargs or {})).close()
    except TypeError as error:
        # gymnasium appends where the error was raised ("... was raised from the environment creator
        # for vlmrl/NumberLine-v0 with kwargs (...)"): the key and kwargs are named here already
        reason = str(error).split(" was raised from the environment creator")[0]
        raise UsageError(f"{key} {kwargs!r} does not suit {env}: {reason}") from None


def save_config(config: Any, path: Path) -> None:
    path.write_text(yaml.safe_dump(dataclasses.asdict(config), sort_keys=False))
