"""The knobs of the recipes (PPO, SFT): dataclasses whose fields carry their help text, YAML presets
shipped in the package (`vlmrl.presets`), `key=value` overrides on the command line, and the range
rules no type expresses (read and typed by `vlmrl.infra.typed_config`).

Anything wrong (an unknown key, a value of the wrong type, an impossible value) is one
`UsageError` line naming the key and what would be right, raised before any work starts.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from vlmrl.infra.errors import UsageError
from vlmrl.infra.seeds import EVAL_SEED_BASE, HELDOUT_SEEDS
from vlmrl.infra.typed_config import (
    Config,
    Layer,
    build_config,
    knob,
    parse_override,
    read_yaml,
)
from vlmrl.presets import preset, preset_names

GAME_HELP = "game: numberline, ezpoints, points24, blackjack or alfworld (an optional extra)"
"""The games' names for help texts (kept here, not derived from `vlmrl.games`, so that the
command line's start-up imports no game)."""


@dataclass
class RunConfig:
    """What PPO and SFT both set: the game, the model and what of it trains, where the run goes.

    `TrainConfig` and `SFTConfig` extend it; a subclass changes a shared key's default with
    `default_of`, which keeps the key's one help text.
    """

    env: str = knob("numberline", GAME_HELP)
    model: str | None = knob(None, "local Hugging Face model folder; empty: the embedded `demo` tiny model")
    seed: int = knob(
        0,
        "seed of everything: deals (SFT: demonstrations from seed to seed+episodes-1), sampling, batch order; "
        "0 to 2^30 - 1",
    )
    out: str = knob("runs/{env}", "run directory; {env} and {seed} are filled in")
    device: str = knob("auto", "auto (cuda if available), cpu, cuda or cuda:N")
    sharding: str = knob(
        "auto",
        "how N processes hold the model: replicate (a whole copy each, as DDP), fsdp (FSDP2: 1/N of weights, "
        "gradients and Adam state each), deepspeed (ZeRO-2, Adam's partitions in CPU memory), auto (the "
        "accelerate config's choice, else replicate)",
    )
    env_kwargs: dict | None = knob(  # noqa: RUF009 (the default is None)
        None, "keyword arguments of the game's environments (null: its defaults), e.g. {rules: rl4vlm}"
    )
    cot: bool = knob(True, "answers with a chain of thought before the action (false: the action alone)")
    # --- the policy
    lora: bool = knob(
        True, "train LoRA adapters (SFT merges them into the saved model); false: fine-tune the trained parts fully"
    )
    lora_rank: int = knob(128, "LoRA rank r")
    lora_alpha: int = knob(256, "LoRA alpha")
    lora_dropout: float = knob(0.05, "LoRA dropout")
    trainable: str = knob("all", "parts that train: language, language+projector or all")
    max_new_tokens: int = knob(256, "longest generated answer, in tokens")
    # --- optimisation
    lr: float = knob(1e-5, "learning rate at the start of the cosine schedule (PPO: Adam; SFT: AdamW)")
    max_grad_norm: float = knob(0.01, "gradient norm clip")
    tensorboard: bool = knob(True, "also write TensorBoard event files")

    def run_dir(self) -> Path:
        return Path(self.out.format(env=self.env, seed=self.seed))


def default_of(key: str, default: Any) -> Any:
    """A shared key of `RunConfig` with another default, and its help text unchanged."""
    return field(default=default, metadata=RunConfig.__dataclass_fields__[key].metadata)


@dataclass
class TrainConfig(RunConfig):
    """A PPO run (`vlmrl train`)."""

    init: str | None = knob(None, "start from a `vlmrl sft` run (its model/ folder) or a model folder; replaces model")
    gradient_checkpointing: bool = knob(False, "recompute activations in the backward pass to save memory")
    cot_lambda: float = knob(0.5, "scale of the chain-of-thought log-prob in the PPO log-prob, in [0, 1]")
    temperature: float = knob(0.2, "sampling temperature (0: greedy; else at least 0.01)")
    top_p: float = knob(1.0, "nucleus sampling threshold")
    kv_cache: str = knob(
        "dynamic",
        "generation's KV cache: dynamic (grown token by token) or static (allocated once per call, written in "
        "place: the same answers, faster on CPU; vlmrl bench rollout --kv-cache compares them)",
    )
    invalid_action: str | None = knob(
        None, "an unparseable answer becomes: random (a random legal action) or penalty (null: the game's own rule)"
    )
    invalid_penalty: float = knob(-1.0, "reward of an unparseable answer when invalid_action is penalty")
    eval_env_kwargs: dict | None = knob(  # noqa: RUF009 (the default is None)
        None, "keyword arguments of the evaluation environments (null: env_kwargs), e.g. {split: valid_unseen}"
    )
    # --- rollouts
    num_envs: int = knob(4, "environments stepped in lockstep (one batched generate per step)")
    env_workers: int = knob(
        0,
        "worker processes that step the environments in parallel (0: in this process; the same results), "
        "for slow games such as ALFWorld",
    )
    steps_per_update: int = knob(512, "environment steps collected per PPO update (all environments together)")
    total_steps: int = knob(15_000, "environment steps of the whole run")
    # --- PPO
    gamma: float = knob(0.9, "discount factor")
    gae_lambda: float = knob(0.95, "GAE lambda")
    advantage: str = knob(
        "gae",
        "advantage estimator: gae (the critic's, the paper), grpo (an episode's return against its group's, "
        "no critic) or gigpo (grpo plus steps that saw the same state compared by their returns from there)",
    )
    group_size: int = knob(
        4, "grpo/gigpo: environments dealt the same seed in each round of episodes (>= 2; gae ignores it)"
    )
    group_std: bool = knob(True, "grpo/gigpo: divide by the group's standard deviation (false: only subtract its mean)")
    gigpo_step_weight: float = knob(1.0, "gigpo: weight of the step-level term beside the episode-level one")
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
    value_lr: float | None = knob(None, "learning rate of the value head (null: lr); same cosine schedule")
    lr_min: float = knob(1e-9, "learning rate at the end of the cosine schedule")
    adam_eps: float = knob(1e-7, "Adam epsilon")
    # --- bookkeeping
    success_window: int = knob(100, "training success rate is over the last K finished episodes")
    eval_every: int = knob(5, "evaluate on held-out seeds every K updates (0: never)")
    eval_episodes: int = knob(50, "episodes per evaluation")
    eval_seeds: str = knob(
        "test",
        "which held-out deals evaluations play: test (seeds from 2^30) or validation (from 2^30 + 2^29; "
        "choose settings on these, report test once)",
    )
    eval_temperature: float | None = knob(None, "sampling temperature of evaluations (null: as in training)")
    samples_every: int = knob(
        5, "every K updates, write a few sampled steps to samples.jsonl and TensorBoard (0: never)"
    )
    samples_logged: int = knob(4, "sampled steps written each time (image, prompt, answer, action, reward, advantage)")
    checkpoint_every: int = knob(5, "write a checkpoint every K updates")
    keep_checkpoints: int = knob(3, "checkpoints kept (older ones are deleted)")

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
    def grouped(self) -> bool:
        """Group-relative advantages: whole episodes per update, groups dealt alike, no critic trained."""
        return self.advantage in ("grpo", "gigpo")

    @property
    def updates(self) -> int:
        return max(1, self.total_steps // (self.rollout_length * self.num_envs))


ADVANTAGES = ("gae", "grpo", "gigpo")
KV_CACHES = ("dynamic", "static")
BEHAVIOURS = ("expert", "random", "epsilon")


@dataclass
class SFTConfig(RunConfig):
    """A supervised warm-up (`vlmrl sft`)."""

    out: str = default_of("out", "runs/{env}-sft")
    lora: bool = default_of("lora", False)
    lora_rank: int = default_of("lora_rank", 64)
    lora_alpha: int = default_of("lora_alpha", 128)
    trainable: str = default_of("trainable", "language+projector")
    max_new_tokens: int = default_of("max_new_tokens", 128)
    lr: float = default_of("lr", 5e-4)
    max_grad_norm: float = default_of("max_grad_norm", 1.0)
    behaviour: str = knob("random", "who plays the demonstrations: expert, random or epsilon")
    epsilon: float = knob(0.5, "with behaviour epsilon: probability of a random action instead of the expert's")
    episodes: int = knob(200, "demonstration episodes (each step is one example)")
    heldout_fraction: float = knob(0.1, "fraction of episodes kept out of training, for validity and accuracy")
    epochs: int = knob(2, "passes over the demonstrations")
    batch_size: int = knob(8, "examples per optimizer step")
    weight_decay: float = knob(0.0, "AdamW weight decay")
    eval_every: int = knob(50, "optimizer steps between held-out checks (0: only at the end)")
    eval_examples: int = knob(32, "held-out examples generated at each check (each up to max_new_tokens)")


def config_source(path: str | Path) -> tuple[Path | Traversable, str]:
    """A config file, or else the shipped preset of that name (``paper/ezpoints-llava-7b``), with the
    name errors call it; neither is one line listing the shipped presets."""
    candidate = Path(path)
    if candidate.exists():
        return candidate, str(candidate)
    shipped = preset(str(path))
    if shipped is not None:
        return shipped, f"preset {str(path).removesuffix('.yaml')}"
    raise UsageError(
        f"config {str(path)!r} is neither a file nor a shipped preset; shipped presets: {', '.join(preset_names())}"
    )


def game_preset(prefix: str, game: str) -> tuple[Traversable, str]:
    """The shipped preset `prefix + game` (``sft/numberline``); a game without one is one line listing
    the presets there are."""
    shipped = preset(prefix + game)
    if shipped is None:
        have = [name for name in preset_names() if name.startswith(prefix) and "/" not in name[len(prefix) :]]
        raise UsageError(f"no preset {prefix + game!r} is shipped; presets: {', '.join(have)}")
    return shipped, f"preset {prefix + game}"


def read_config(
    kind: type[Config], path: str | Path | None, env: str | None, overrides: list[str], preset_prefix: str
) -> Config:
    """A config of `kind` from a YAML file (or a shipped preset named like one), or a game's preset
    `preset_prefix + game`, plus overrides."""
    layers: list[Layer] = []
    if path is not None:
        source, name = config_source(path)
        layers.append((read_yaml(source, name), name))
    elif env is not None:
        from vlmrl.games import get_task

        game = get_task(env).name
        source, name = game_preset(preset_prefix, game)
        layers.append(({**read_yaml(source, name), "env": game}, name))
    layers.append((dict(parse_override(text) for text in overrides), "the command line"))
    return build_config(kind, layers)


def load_config(path: str | Path | None = None, env: str | None = None, overrides: list[str] = ()) -> TrainConfig:
    """A validated PPO config from a YAML file, or the preset of a game, plus `key=value` overrides."""
    config = read_config(TrainConfig, path, env, list(overrides), "")
    validate(config)
    return config


RESUME_ALONE = "--resume continues a run with its own config; drop --config/--env, --overwrite and overrides"


def resolved_train_config(
    path: str | Path | None, env: str | None, overrides: list[str], resume: str | Path | None = None
) -> TrainConfig:
    """What `vlmrl train` would run: a run's own config when resuming, else the file or preset plus overrides."""
    if resume is not None:
        if path or env or overrides:
            raise UsageError(RESUME_ALONE)
        saved = Path(resume) / "config.yaml"
        if not saved.is_file():
            raise UsageError(f"{str(resume)!r} is not a run directory (no config.yaml); nothing to resume")
        config = load_config(saved)
        config.out = str(resume)
        return config
    if path is None and env is None:
        raise UsageError("give --config FILE or --env NAME (or --resume RUN_DIR)")
    return load_config(path, env, overrides)


def load_sft_config(path: str | Path | None = None, env: str | None = None, overrides: list[str] = ()) -> SFTConfig:
    """A validated SFT config from a YAML file, or the preset `sft/<game>`, plus `key=value` overrides."""
    from vlmrl.games import get_task

    config = read_config(SFTConfig, path, env, list(overrides), "sft/")
    get_task(config.env)
    check_fields(config)
    if config.behaviour not in BEHAVIOURS:
        raise UsageError(f"behaviour must be one of {', '.join(BEHAVIOURS)}, not {config.behaviour!r}")
    if config.seed + config.episodes > EVAL_SEED_BASE:
        raise UsageError(
            f"seed + episodes must not exceed {EVAL_SEED_BASE} (2^30): demonstrations are dealt from seeds "
            f"{config.seed}..{config.seed + config.episodes - 1}, and from 2^30 up are the held-out deals"
        )
    check_env_kwargs(config.env, "env_kwargs", config.env_kwargs)
    return config


MIN_TEMPERATURE = 0.01
"""Below this (but above 0, greedy) logits / temperature overflow: sampling would fail mid-run."""
MAX_TOTAL_STEPS = 10**12
"""A trillion environment steps: years of training at any speed vlmrl reaches."""


@dataclass(frozen=True)
class Rule:
    """What a field's value must be, as `ok(value)` and the words completing "KEY must be ..."."""

    ok: typing.Callable[[Any], bool]
    text: str


def _temperature(value: float) -> bool:
    return value == 0 or value >= MIN_TEMPERATURE


AT_LEAST_1 = Rule(lambda value: value >= 1, "at least 1")
POSITIVE = Rule(lambda value: value > 0, "positive")
NOT_NEGATIVE = Rule(lambda value: value >= 0, "not negative")
UNIT = Rule(lambda value: 0.0 <= value <= 1.0, "between 0 and 1")
TEMPERATURE = Rule(_temperature, f"0 (greedy) or at least {MIN_TEMPERATURE}")
RULES: dict[str, Rule] = {
    "seed": Rule(
        lambda value: 0 <= value < EVAL_SEED_BASE,
        f"between 0 and {EVAL_SEED_BASE - 1} (2^30 - 1; seeds from 2^30 up deal the held-out episodes)",
    ),
    **dict.fromkeys(("gamma", "gae_lambda", "cot_lambda", "epsilon"), UNIT),
    "top_p": Rule(lambda value: 0.0 < value <= 1.0, "in (0, 1]"),
    "lora_dropout": Rule(lambda value: 0.0 <= value < 1.0, "in [0, 1)"),
    "heldout_fraction": Rule(lambda value: 0.0 <= value < 1.0, "in [0, 1)"),
    **dict.fromkeys(
        (
            "lora_rank",
            "lora_alpha",
            "num_envs",
            "max_new_tokens",
            "ppo_epochs",
            "minibatch_size",
            "grad_accum",
            "success_window",
            "eval_episodes",
            "eval_examples",
            "group_size",
            "checkpoint_every",
            "keep_checkpoints",
            "episodes",
            "epochs",
            "batch_size",
        ),
        AT_LEAST_1,
    ),
    "total_steps": Rule(lambda value: 1 <= value <= MAX_TOTAL_STEPS, f"between 1 and {MAX_TOTAL_STEPS:.0e}"),
    **dict.fromkeys(("clip", "lr", "max_grad_norm", "adam_eps", "value_clip", "value_lr"), POSITIVE),
    **dict.fromkeys(
        (
            "value_coef",
            "entropy_coef",
            "kl_coef",
            "lr_min",
            "eval_every",
            "weight_decay",
            "gigpo_step_weight",
            "samples_every",
            "samples_logged",
            "env_workers",
        ),
        NOT_NEGATIVE,
    ),
    **dict.fromkeys(("temperature", "eval_temperature"), TEMPERATURE),
}
"""Every range check, by field name: a config of any kind is checked on the fields it has."""


def check_fields(config: Any) -> None:
    """Each field of `config` that has a rule (null means "not set" and passes), its choices, then
    the run folder pattern and the device: one line naming the first key that is wrong."""
    from vlmrl.infra.distributed import SHARDINGS
    from vlmrl.policy.parts import TRAINABLE_CHOICES

    for item in dataclasses.fields(config):
        value, rule = getattr(config, item.name), RULES.get(item.name)
        if rule is not None and value is not None and not rule.ok(value):
            raise UsageError(f"{item.name} must be {rule.text}, not {value!r}")
    if config.trainable not in TRAINABLE_CHOICES:
        raise UsageError(f"trainable must be one of {', '.join(TRAINABLE_CHOICES)}, not {config.trainable!r}")
    if config.sharding not in SHARDINGS:
        raise UsageError(f"sharding must be one of {', '.join(SHARDINGS)}, not {config.sharding!r}")
    check_out(config.out)
    check_device(config.device)


def check_out(pattern: str) -> None:
    """`out` is a path pattern with {env} and {seed}; anything else in braces is one line, not a KeyError."""
    try:
        pattern.format(env="env", seed=0)
    except KeyError as error:
        reason = f"{{{error.args[0]}}} is not a field"
    except (ValueError, IndexError, AttributeError) as error:
        reason = str(error)
    else:
        return
    raise UsageError(
        f"out {pattern!r} is not a run folder pattern ({reason}): {{env}} and {{seed}} are filled in, "
        "and {{ or }} writes a brace"
    )


def check_device(device: str) -> None:
    """auto, cpu, cuda or cuda:N, and CUDA only where this torch and machine have it."""
    if device in ("auto", "cpu"):
        return
    import torch

    index = device.partition(":")[2]
    if not (device == "cuda" or (device.startswith("cuda:") and index.isdigit())):
        raise UsageError(f"device must be auto, cpu, cuda or cuda:N (N a GPU number), not {device!r}")
    if not torch.cuda.is_available():
        why = f"this torch ({torch.__version__}) is a CPU build" if torch.version.cuda is None else "no GPU is visible"
        raise UsageError(f"device {device!r} is not available: {why}; use device=cpu (or auto)")
    if index and int(index) >= torch.cuda.device_count():
        count = torch.cuda.device_count()
        raise UsageError(
            f"device {device!r} does not exist: this machine has {count} GPU(s), cuda:0 to cuda:{count - 1}"
        )


def validate(config: TrainConfig) -> None:
    """Impossible values, each a one-line error naming the key, before any work starts."""
    from vlmrl.games import get_task

    get_task(config.env)
    check_fields(config)

    def need(ok: bool, message: str) -> None:
        if not ok:
            raise UsageError(message)

    need(
        config.invalid_action in (None, "random", "penalty"),
        f"invalid_action must be random or penalty (or null: the game's own rule), not {config.invalid_action!r}",
    )
    need(
        config.eval_seeds in HELDOUT_SEEDS,
        f"eval_seeds must be one of {', '.join(HELDOUT_SEEDS)}, not {config.eval_seeds!r}",
    )
    need(
        config.kv_cache in KV_CACHES,
        f"kv_cache must be one of {', '.join(KV_CACHES)}, not {config.kv_cache!r}",
    )
    need(
        config.advantage in ADVANTAGES,
        f"advantage must be one of {', '.join(ADVANTAGES)}, not {config.advantage!r}",
    )
    if config.grouped:
        need(
            config.group_size >= 2,
            f"advantage {config.advantage} compares episodes in groups: group_size must be at least 2, "
            f"not {config.group_size}",
        )
        need(
            config.num_envs % config.group_size == 0,
            f"num_envs ({config.num_envs}) must be a multiple of group_size ({config.group_size}): "
            "every round deals each group's seed to group_size environments",
        )
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
    except (TypeError, ValueError) as error:  # an unknown keyword; a value out of range (rules: foo)
        # gymnasium appends where the error was raised ("... was raised from the environment creator
        # for vlmrl/NumberLine-v0 with kwargs (...)"): the key and kwargs are named here already
        reason = str(error).split(" was raised from the environment creator")[0]
        raise UsageError(f"{key} {kwargs!r} does not suit {env}: {reason}") from None
