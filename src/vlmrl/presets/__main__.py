"""`python -m vlmrl.presets NAME`: the path of a shipped file, for commands that want a path
(`accelerate launch --config_file "$(python -m vlmrl.presets accelerate/fsdp2)"`)."""

from __future__ import annotations

import sys

from vlmrl.presets import accelerate_config, accelerate_configs, preset, preset_names


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m vlmrl.presets NAME (e.g. accelerate/fsdp2, numberline)", file=sys.stderr)
        return 2
    found = accelerate_config(argv[0]) if argv[0].startswith("accelerate/") else preset(argv[0])
    if found is None:
        known = ", ".join([*preset_names(), *accelerate_configs()])
        print(f"vlmrl: error: no shipped file {argv[0]!r}; known: {known}", file=sys.stderr)
        return 2
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
