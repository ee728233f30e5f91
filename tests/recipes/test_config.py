"""Configs: presets load, overrides apply, and every mistake is one clear line before any work."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.infra.errors import UsageError
from vlmrl.recipes.config import TrainConfig, load_config

GAMES = ["numberline", "ezpoints", "points24", "blackjack"]


@pytest.mark.parametrize("game", GAMES)
def test_every_game_has_a_cpu_preset_and_a_paper_preset(game):
    cpu = load_config(env=game)
    assert cpu.env == game and cpu.model is None
    paper = load_config(f"paper/{game}-llava-7b")
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
    with pytest.raises(UsageError, match=r"missing\.yaml' is neither a file nor a shipped preset; shipped presets: al"):
        load_config(tmp_path / "missing.yaml")


def test_every_field_has_help_text():
    import dataclasses

    assert all(f.metadata.get("help") for f in dataclasses.fields(TrainConfig))


def test_the_help_texts_name_every_game():
    from vlmrl.games import game_names
    from vlmrl.recipes.config import GAME_HELP

    assert all(name in GAME_HELP for name in game_names(optional=True))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["lr=inf"], "lr in the command line must be a finite number, not inf"),
        (["lr=nan"], "lr in the command line must be a finite number, not nan"),
        (["gamma=.nan"], "gamma in the command line must be a finite number, not nan"),
        (["temperature=inf"], "temperature in the command line must be a finite number, not inf"),
        (["temperature=1e-300"], "temperature must be 0 (greedy) or at least 0.01, not 1e-300"),
        (["eval_temperature=0.001"], "eval_temperature must be 0 (greedy) or at least 0.01, not 0.001"),
        (["seed=-1"], "seed must be between 0 and 1073741823 (2^30 - 1; seeds from 2^30 up deal the held-out"),
        (["seed=1073741824"], "seed must be between 0 and 1073741823"),
        ([f"seed={10**23}"], "seed in the command line is out of range (1e+23); a 64-bit integer is expected"),
        ([f"total_steps={10**100}"], "total_steps in the command line is out of range (1e+100)"),
        ([f"total_steps={10**13}"], "total_steps must be between 1 and 1e+12, not 10000000000000"),
        (["out=runs/{foo}"], "out 'runs/{foo}' is not a run folder pattern ({foo} is not a field): {env} and {seed}"),
        (["out=runs/{"], "out 'runs/{' is not a run folder pattern (Single '{' encountered in format string)"),
        (["out=runs/{0}"], "out 'runs/{0}' is not a run folder pattern (Replacement index 0 out of range"),
        (["device=cuda:abc"], "device must be auto, cpu, cuda or cuda:N (N a GPU number), not 'cuda:abc'"),
        (["device=tpu"], "device must be auto, cpu, cuda or cuda:N"),
        (["value_clip=-1"], "value_clip must be positive, not -1.0"),
        (
            ["invalid_action=skip"],
            "invalid_action must be random or penalty (or null: the game's own rule), not 'skip'",
        ),
    ],
)
def test_values_must_be_finite_and_in_range_before_any_work(overrides, message):
    with pytest.raises(UsageError) as error:
        load_config(env="numberline", overrides=overrides)
    assert message in str(error.value) and len(str(error.value).splitlines()) == 1


def test_a_literal_brace_in_out_is_written_doubled():
    assert load_config(env="numberline", overrides=["out=runs/{{x}}-{seed}"]).run_dir() == Path("runs/{x}-0")


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_on_a_machine_without_it_is_one_line(device):
    import torch

    with pytest.raises(UsageError) as error:
        load_config(env="numberline", overrides=[f"device={device}"])
    why = f"this torch ({torch.__version__}) is a CPU build" if torch.version.cuda is None else "no GPU is visible"
    assert str(error.value) == f"device '{device}' is not available: {why}; use device=cpu (or auto)"


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["lr=inf"], "lr in the command line must be a finite number, not inf"),
        (["seed=-1"], "seed must be between 0 and 1073741823"),
        (["seed=1073741800", "episodes=100"], "seed + episodes must not exceed 1073741824 (2^30): demonstrations"),
        (["out=sft/{foo}"], "out 'sft/{foo}' is not a run folder pattern"),
        (["device=cuda:x"], "device must be auto, cpu, cuda or cuda:N"),
        (["lora_rank=0"], "lora_rank must be at least 1, not 0"),
        (["max_grad_norm=0"], "max_grad_norm must be positive, not 0.0"),
        (["behaviour=human"], "behaviour must be one of expert, random, epsilon, not 'human'"),
        (["trainable=head"], "trainable must be one of language, language+projector, all, not 'head'"),
    ],
)
def test_sft_values_are_checked_by_the_same_rules(overrides, message):
    from vlmrl.recipes.config import load_sft_config

    with pytest.raises(UsageError) as error:
        load_sft_config(env="numberline", overrides=overrides)
    assert message in str(error.value) and len(str(error.value).splitlines()) == 1


def test_a_binary_or_non_utf8_config_is_one_line(tmp_path: Path):
    binary = tmp_path / "model.safetensors"
    binary.write_bytes(bytes(range(256)) * 4)
    latin = tmp_path / "config.yaml"
    latin.write_bytes("env: numberline\n# réglages\n".encode("latin-1"))
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"env: numberline\x00\x01\n")
    for path, message in ((binary, "is not text (YAML is UTF-8)"), (latin, "is not text"), (nul, "is not valid YAML")):
        with pytest.raises(UsageError) as error:
            load_config(path)
        assert message in str(error.value) and len(str(error.value).splitlines()) == 1


FUZZED_KEYS = ["lr", "temperature", "seed", "total_steps", "out", "device", "gamma", "num_envs", "value_clip", "model"]


@settings(max_examples=200, deadline=None)
@given(key=st.sampled_from(FUZZED_KEYS), text=st.text(max_size=40))
def test_any_override_text_is_a_config_or_one_line(key, text):
    """Whatever follows `key=` on a command line: a valid config, or one UsageError line, never a traceback."""
    try:
        config = load_config(env="numberline", overrides=[f"{key}={text}"])
    except UsageError as error:
        assert len(str(error).splitlines()) == 1
    else:
        config.run_dir()


def test_presets_are_named_like_files_and_a_missing_one_is_one_line(monkeypatch, tmp_path):
    import vlmrl.recipes.config as config_module

    assert load_config("paper/ezpoints-llava-7b.yaml") == load_config("paper/ezpoints-llava-7b")
    local = tmp_path / "paper" / "ezpoints-llava-7b.yaml"  # a file of the same name wins over the preset
    local.parent.mkdir()
    local.write_text("env: ezpoints\nlr: 3.0e-4\n")
    monkeypatch.chdir(tmp_path)
    assert load_config("paper/ezpoints-llava-7b.yaml").lr == 3e-4
    monkeypatch.setattr(config_module, "preset", lambda name: None)
    with pytest.raises(UsageError, match=r"^no preset 'blackjack' is shipped; presets: alfworld, blackjack, ezpoints"):
        load_config(env="blackjack")
