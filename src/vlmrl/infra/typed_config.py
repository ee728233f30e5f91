"""Dataclass configs read from layers of YAML (a file, then `key=value` overrides), typed by pydantic.

The dataclass stays the one description of a config: its fields' types, defaults and help texts
(`knob`). pydantic checks every value against the field's type in strict mode (an int is a float
and a number is text; nothing else changes type: `lora=1` is not a boolean, `num_envs=2.5` not an
integer), and its first error becomes one `UsageError` line naming the key, the layer it came from
and what would be right.
YAML is read as YAML 1.2 reads numbers, so `1e-5` is a float (YAML 1.1, PyYAML's, reads a string).
"""

from __future__ import annotations

import dataclasses
import functools
import re
import textwrap
import types
import typing
from collections.abc import Sequence
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml

from vlmrl.infra.errors import UsageError
from vlmrl.infra.files import atomic_write_text

Config = typing.TypeVar("Config")


def knob(default: Any, help: str) -> Any:
    """A config field with its help text (what `--help` prints)."""
    return dataclasses.field(default=default, metadata={"help": help})


class NumberAwareLoader(yaml.SafeLoader):
    """PyYAML's safe loader, plus the floats YAML 1.1 misses: `1e-5`, `2E3`, `.5e-3`, and `inf`/`nan`
    spelled as Python spells them (so `lr=inf` is refused as not finite, not as not a number)."""


NumberAwareLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+|[-+]?(?:inf|Inf|INF)|nan|NaN|NAN)$"),
    list("-+0123456789.iInN"),
)


def load_yaml(text: str) -> Any:
    """YAML text, read safely (no tags that build objects) and with YAML 1.2's numbers."""
    return yaml.load(text, Loader=NumberAwareLoader)  # a SafeLoader: no tags that build objects


def read_yaml(path: Path | Traversable, name: str | None = None) -> dict[str, Any]:
    """A YAML mapping from a file or a shipped preset; `name` is what errors call it."""
    name = str(path) if name is None else name
    try:
        data = load_yaml(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise UsageError(f"cannot read config {name!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"config {name!r} is not text (YAML is UTF-8); is it the right file?") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise UsageError(f"config {name!r} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config {name!r} must be a mapping of key: value lines")
    return {str(key): value for key, value in data.items()}


def parse_override(text: str) -> tuple[str, Any]:
    """`key=value`, the value read as YAML (so 0.1 is a number, true a boolean, null nothing)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"override {text!r} is not key=value (e.g. lr=1e-5)")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


Layer = tuple[dict[str, Any], str]
"""Values and what errors call their source: ``({"lr": 1e-4}, "the command line")``."""


INT64 = Annotated[int, pydantic.Field(ge=-(2**63), lt=2**63)]
"""Integers a config holds: what torch, numpy and JSON readers all take."""


def _number_as_text(value: Any) -> Any:
    return str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value


TEXT = Annotated[str, pydantic.BeforeValidator(_number_as_text)]
"""Text, where a number is taken as written (`model=7`, `out=2024`): YAML reads both as numbers."""


def _allowed_types(hint: Any) -> tuple[Any, ...]:
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _checked_type(hint: Any) -> Any:
    """The field's type as pydantic checks it: bounded integers, numbers accepted as text, mappings
    with text keys."""
    replaced = tuple({int: INT64, str: TEXT, dict: dict[str, Any]}.get(kind, kind) for kind in _allowed_types(hint))
    return replaced[0] if len(replaced) == 1 else typing.Union[replaced]  # noqa: UP007 (built at run time)


@functools.cache
def _validator(kind: type) -> type[pydantic.BaseModel]:
    """A strict pydantic model of the dataclass's fields (unknown keys, nan and inf refused)."""
    hints = typing.get_type_hints(kind)
    fields = {item.name: (_checked_type(hints[item.name]), item.default) for item in dataclasses.fields(kind)}
    settings = pydantic.ConfigDict(strict=True, extra="forbid", allow_inf_nan=False)
    return pydantic.create_model(kind.__name__, __config__=settings, **fields)


def type_names(kind: type, key: str) -> str:
    """A field's type in words: ``float or null``."""
    allowed = _allowed_types(typing.get_type_hints(kind)[key])
    return " or ".join("null" if t is type(None) else t.__name__ for t in allowed)


def build_config(kind: type[Config], layers: Sequence[Layer]) -> Config:
    """The dataclass from its layers, later layers winning, every value checked against its field's
    type; the first mistake is one line naming the key and the layer it came from."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for layer, source in layers:
        for key, value in layer.items():
            values[key], sources[key] = value, source
    try:
        checked = _validator(kind).model_validate(values)
    except pydantic.ValidationError as error:
        raise UsageError(_one_line(kind, error.errors()[0], values, sources)) from None
    return kind(**{key: getattr(checked, key) for key in values})


def _one_line(kind: type, error: Any, values: dict[str, Any], sources: dict[str, str]) -> str:
    key = str(error["loc"][0])
    source = sources.get(key, "the config")
    if error["type"] == "extra_forbidden":
        known = ", ".join(item.name for item in dataclasses.fields(kind))
        return f"unknown key {key!r} in {source}; known keys: {known}"
    value = values[key]
    if value is None:
        return f"{key} in {source} cannot be null; expected {type_names(kind, key)}"
    if error["type"] == "finite_number":
        return f"{key} in {source} must be a finite number, not {value!r}"
    if error["type"] in ("greater_than_equal", "less_than"):
        return f"{key} in {source} is out of range ({value:.3g}); a 64-bit integer is expected"
    return f"{key} in {source} must be {type_names(kind, key)}, not {value!r}"


def config_yaml(config: Any) -> str:
    """A config as the YAML a config file holds (what `--print-config` prints and runs save)."""
    return yaml.safe_dump(dataclasses.asdict(config), sort_keys=False)


def save_config(config: Any, path: Path) -> None:
    atomic_write_text(path, config_yaml(config))


KEYS_HEADING = "keys (key=value on the command line, key: value in a config file):"


def _shown(value: Any) -> str:
    """A default as YAML writes it (null, true, runs/{env})."""
    return yaml.safe_dump(value, default_flow_style=True).removesuffix("\n...\n").strip()


def keys_help(kind: type) -> str:
    """Every key of a config dataclass with its type, default and help, generated from the fields
    (the epilog of `vlmrl train --help` and `vlmrl sft --help`)."""
    lines = [KEYS_HEADING]
    for item in dataclasses.fields(kind):
        lines.append(f"  {item.name} ({type_names(kind, item.name)}, default {_shown(item.default)})")
        lines += textwrap.wrap(item.metadata["help"], width=96, initial_indent=" " * 6, subsequent_indent=" " * 6)
    return "\n".join(lines)
