"""Configs: presets load, overrides apply, and every mistake is one clear line before any work."""

from pathlib import Path

import pytest

from vlmrl.config import CONFIG_DIR, TrainConfig, load_config
from vlmrl.errors import UsageError

GAMES = ["numberline", "ezpoints", "points24", "blackjack"]


@pytest.mark.parametrize("game", GAMES)
def test_every_game_has_a_cpu_preset_and_a_paper_preset(game):
    cpu = load_config(env=game)
    assert cpu.env == game and cpu.model is None
    paper = load_config(CONFIG_DIR / "paper" / f"{game}-llava-7b.yaml")
    assert (paper.lora_rank, paper.lora_alpha, paper.cot_lambda, paper.clip, paper.gamma) == (128, 256, 0.5, 0.1, 0.9)
    assert paper.steps_per_update == (512 if game in ("numberline", "blackjack") else 1024)
    assert (paper.lr, paper.max_grad_norm, paper.grad_accum, paper.ppo_epochs) == (1e-5, 0.01, 128, 4)


def test_overrides_are_typed_values():
    config = load_config(
        env="numberline",
        overrides=["lr=1e-4", "num_envs=2", "steps_per_update=8", "lora=true", "value_clip=null", "model=models/x"],
    )
    assert config.lr == 1e-4 and isinstance(config.lr, float)
    assert (config.num_envs, config.lora, config.value_clip, config.model) == (2, True, None, "models/x")


def test_ints_are_accepted_where_floats_are_expected_but_not_the_reverse():
    assert load_config(env="numberline", overrides=["clip=1"]).clip == 1.0
    with pytest.raises(UsageError, match=r"num_envs in the command line must be int, not 2\.5"):
        load_config(env="numberline", overrides=["num_envs=2.5"])


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["lr_max=3"], "unknown key 'lr_max' in the command line; known keys: env, model"),
        (["gamma=1.5"], "gamma must be between 0 and 1, not 1.5"),
        (["num_envs=0"], "num_envs must be at least 1"),
        (["steps_per_update=10", "num_envs=4"], "steps_per_update (10) must be a multiple of num_envs (4)"),
        (["total_steps=8"], "total_steps (8) must be at least steps_per_update"),
        (["lr=-1"], "lr must be positive"),
        (["trainable=everything"], "trainable must be one of language, language+projector, all"),
        (["invalid_action=skip"], "invalid_action must be random or penalty"),
        (["env=chess"], "unknown game 'chess'"),
        (["lora=maybe"], "lora in the command line must be bool, not 'maybe'"),
        (["seed"], "override 'seed' is not key=value"),
        (["cot_lambda=null"], "cot_lambda in the command line cannot be null"),
    ],
)
def test_bad_values_are_one_clear_line(overrides, message):
    with pytest.raises(UsageError) as error:
        load_config(env="numberline", overrides=overrides)
    assert message in str(error.value) and len(str(error.value).splitlines()) == 1


def test_bad_files_are_one_clear_line(tmp_path: Path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("env: numberline\nlr: [1, 2\n")
    with pytest.raises(UsageError, match="is not valid YAML at line"):
        load_config(broken)
    listing = tmp_path / "list.yaml"
    listing.write_text("- env\n- lr\n")
    with pytest.raises(UsageError, match="must be a mapping"):
        load_config(listing)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("env: numberline\nlearning_rate: 0.1\n")
    with pytest.raises(UsageError, match=r"unknown key 'learning_rate' in .*unknown\.yaml"):
        load_config(unknown)
    with pytest.raises(UsageError, match="cannot read config"):
        load_config(tmp_path / "missing.yaml")


def test_every_field_has_help_text():
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))


def test_the_help_texts_name_every_game():
    from vlmrl.config import GAME_HELP
    from vlmrl.games import game_names

    assert all(name in GAME_HELP for name in game_names(optional=True))
