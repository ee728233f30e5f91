"""The package as a user installs it: a wheel built with `python -m build`, installed into a fresh
virtualenv, run from an empty folder far from the repository, with the presets it ships."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tiny_runs import TINY

REPO = Path(__file__).resolve().parents[1]


def shell(*argv, cwd: Path, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict]:
    """A new virtualenv holding only the built wheel; its dependencies (torch, transformers, ...) come
    from this interpreter's site-packages through a path file, since nothing may be downloaded here."""
    root = tmp_path_factory.mktemp("package")
    source = root / "source"  # a copy, so that building writes nothing into the checkout
    for name in ("pyproject.toml", "README.md"):
        source.mkdir(exist_ok=True)
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    build = [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", root / "dist", source]
    built = shell(*build, cwd=root)
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = (root / "dist").glob("vlmrl-*.whl")
    venv = root / "venv"
    assert shell(sys.executable, "-m", "venv", venv, cwd=root).returncode == 0
    python = venv / "bin" / "python"
    site = shell(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])", cwd=root).stdout.strip()
    Path(site, "outer-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = shell(python, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", wheel, cwd=root)
    assert pip.returncode == 0, pip.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["OMP_NUM_THREADS"] = "1"
    return wheel, env


def test_the_wheel_ships_every_preset(installed):
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for game in ("numberline", "ezpoints", "points24", "blackjack", "alfworld"):
        assert f"vlmrl/presets/{game}.yaml" in names and f"vlmrl/presets/sft/{game}.yaml" in names
        assert f"vlmrl/presets/paper/{game}-llava-7b.yaml" in names
    for layout in ("ddp", "fsdp2", "fsdp2-zero2", "fsdp2-offload", "deepspeed-zero2-offload"):
        assert f"vlmrl/presets/accelerate/{layout}.yaml" in names


def test_an_installed_wheel_says_where_its_accelerate_configs_are(installed, tmp_path):
    _, env = installed
    found = shell("python", "-m", "vlmrl.presets", "accelerate/fsdp2", cwd=tmp_path, env=env)
    assert found.returncode == 0 and "site-packages" in found.stdout
    assert "distributed_type: FSDP" in Path(found.stdout.strip()).read_text()
    missing = shell("python", "-m", "vlmrl.presets", "accelerate/zero9", cwd=tmp_path, env=env)
    assert missing.returncode == 2 and "no shipped file 'accelerate/zero9'; known:" in missing.stderr
    assert "accelerate/fsdp2-zero2" in missing.stderr


def test_an_installed_wheel_trains_from_an_empty_folder(installed, tiny_llava, tmp_path):
    _, env = installed
    work = tmp_path / "empty"
    work.mkdir()
    where = shell("python", "-c", "import vlmrl; print(vlmrl.__file__)", cwd=work, env=env)
    assert "venv" in where.stdout and str(REPO / "src") not in where.stdout  # the wheel, not the checkout

    sft = ["vlmrl", "sft", "--env", "numberline", f"model={tiny_llava}", "out=sft", "episodes=2", "epochs=1"]
    done = shell(*sft, "batch_size=4", "eval_examples=2", "max_new_tokens=8", cwd=work, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "sft" / "model" / "config.json").is_file()

    train = ["vlmrl", "train", "--env", "numberline", "--init", "sft", "out=rl", "total_steps=8", *TINY]
    done = shell(*train, cwd=work, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert (work / "rl" / "metrics.jsonl").is_file()
    config = (work / "rl" / "config.yaml").read_text()
    assert "gamma: 0.5" in config and "invalid_action: penalty" in config  # the shipped preset's, not the 7B defaults

    learn = ["vlmrl", "bench", "learn", "--env", "numberline", "--out", "learn", "--episodes", "2", "--json"]
    stages = [f"sft.model={tiny_llava}", "sft.episodes=2", "sft.epochs=1", "sft.eval_examples=2"]
    stages += [f"rl.{o}" for o in ("total_steps=8", *TINY)]
    done = shell(*learn, "--skip-untrained", *stages, cwd=work, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert [stage["stage"] for stage in json.loads(done.stdout)["stages"]] == ["sft", "rl"]


def test_an_installed_wheel_names_its_presets_when_one_is_missing(installed, tmp_path):
    _, env = installed
    done = shell("vlmrl", "train", "--config", "paper/chess-llava-7b", cwd=tmp_path, env=env)
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert "config 'paper/chess-llava-7b' is neither a file nor a shipped preset; shipped presets:" in line
    assert "paper/ezpoints-llava-7b" in line and "sft/numberline" in line
