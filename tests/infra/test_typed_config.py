"""Typed configs from YAML layers: YAML 1.2 numbers, strict types, the layer named in every error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmrl.infra.errors import UsageError
from vlmrl.infra.typed_config import build_config, keys_help, knob, load_yaml, parse_override, read_yaml


@dataclass
class Knobs:
    lr: float = knob(1e-3, "learning rate")
    steps: int = knob(10, "steps")
    name: str = knob("run", "name")
    folder: str | None = knob(None, "a folder")
    clip: float | None = knob(0.1, "clip")
    fast: bool = knob(False, "go fast")
    extra: dict | None = knob(None, "keyword arguments")  # noqa: RUF009 (the default is None)


@pytest.mark.parametrize(
    "text,value",
    [("1e-5", 1e-5), ("2E3", 2000.0), (".5e-3", 5e-4), ("-1.5e+2", -150.0), ("1.0e-5", 1e-5), ("3", 3), ("0.1", 0.1)],
)
def test_numbers_read_as_yaml_1_2_reads_them(text, value):
    assert load_yaml(text) == value and type(load_yaml(text)) is type(value)


def test_a_file_with_exponent_floats_gives_floats(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("lr: 1e-5\nsteps: 4\nname: 1e5x\n")
    assert build_config(Knobs, [(read_yaml(path), str(path))]) == Knobs(lr=1e-5, steps=4, name="1e5x")


def test_later_layers_win_and_errors_name_the_layer_a_value_came_from():
    config = build_config(Knobs, [({"lr": 0.5, "steps": 3}, "base.yaml"), ({"lr": 0.25}, "the command line")])
    assert (config.lr, config.steps) == (0.25, 3)
    with pytest.raises(UsageError, match=r"^steps in base\.yaml must be int, not 2\.5$"):
        build_config(Knobs, [({"steps": 2.5}, "base.yaml"), ({"lr": 0.25}, "the command line")])


@pytest.mark.parametrize(
    "override,message",
    [
        ("fast=1", "fast in the command line must be bool, not 1"),
        ("steps=true", "steps in the command line must be int, not True"),
        ("steps=2.0", "steps in the command line must be int, not 2.0"),
        ("steps='5'", "steps in the command line must be int, not '5'"),
        ("lr=fast", "lr in the command line must be float, not 'fast'"),
        ("lr=null", "lr in the command line cannot be null; expected float"),
        ("clip=[1]", "clip in the command line must be float or null, not [1]"),
        ("clip=.inf", "clip in the command line must be a finite number, not inf"),
        ("extra=[1, 2]", "extra in the command line must be dict or null, not [1, 2]"),
        ("extra={1: 2}", "extra in the command line must be dict or null, not {1: 2}"),
        (f"steps={2**63}", "steps in the command line is out of range (9.22e+18); a 64-bit integer is expected"),
        ("speed=3", "unknown key 'speed' in the command line; known keys: lr, steps, name, folder, clip, fast, extra"),
    ],
)
def test_every_wrong_value_is_one_line_naming_key_layer_and_type(override, message):
    with pytest.raises(UsageError) as error:
        build_config(Knobs, [(dict([parse_override(override)]), "the command line")])
    assert str(error.value) == message


def test_ints_are_floats_and_numbers_are_text_nothing_else_changes_type():
    config = build_config(Knobs, [(dict(parse_override(t) for t in ("lr=1", "folder=7", "name=2.5")), "cli")])
    assert config.lr == 1.0 and isinstance(config.lr, float)
    assert (config.folder, config.name) == ("7", "2.5")


def test_the_help_lists_every_key_with_type_and_default():
    text = keys_help(Knobs)
    assert "  lr (float, default 0.001)" in text and "  folder (str or null, default null)" in text
    assert "learning rate" in text


@settings(max_examples=300, deadline=None)
@given(key=st.sampled_from(["lr", "steps", "name", "folder", "clip", "fast", "extra", "other"]), text=st.text())
def test_any_override_is_a_config_or_one_line(key, text):
    try:
        build_config(Knobs, [(dict([parse_override(f"{key}={text}")]), "the command line")])
    except UsageError as error:
        assert len(str(error).splitlines()) == 1
