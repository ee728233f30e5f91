"""A model folder is data, never code: loading runs nothing from it, asks nothing, and a folder that
cannot be a usable checkpoint (custom code, pickled or broken weights, a config without its sizes)
is one line before anything is built."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tiny_runs import TINY
from vlmrl.infra.errors import UsageError
from vlmrl.policy import load_policy

EVIL_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("the folder's code ran")
from transformers import PretrainedConfig, PreTrainedModel

class EvilConfig(PretrainedConfig):
    model_type = "evilvlm"

class EvilModel(PreTrainedModel):
    config_class = EvilConfig
"""


def run_in_terminal(argv: list[str], cwd: Path, timeout: float = 240) -> tuple[int, str]:
    """Run `argv` on a pseudo-terminal that answers "y" to any prompt (as a careless user would)."""
    master, slave = os.openpty()
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_VERBOSITY="error")
    process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd, env=env, close_fds=True)
    os.close(slave)
    output, deadline, last_answer = b"", time.monotonic() + timeout, 0.0
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: the program closed the terminal
                    break
                if not chunk:
                    break
                output += chunk
            if time.monotonic() - last_answer > 0.5:
                os.write(master, b"y\n")
                last_answer = time.monotonic()
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail(f"{argv} did not finish in {timeout} s; it printed: {output.decode(errors='replace')}")
    finally:
        os.close(master)
    return process.wait(), output.decode(errors="replace").replace("\r\n", "\n")


def evil_folder(tiny_llava: Path, where: Path, placement: str) -> tuple[Path, Path]:
    """A copy of a tiny model whose configs point at a module that writes a marker file when imported."""
    folder, marker = where / "model", where / "marker"
    shutil.copytree(tiny_llava, folder)
    (folder / "evil.py").write_text(EVIL_MODULE.format(marker=str(marker)))

    def edit(name: str, **changes) -> None:
        path = folder / name
        data = json.loads(path.read_text()) if path.exists() else {}
        path.write_text(json.dumps({**data, **changes}))

    if placement == "unknown model type":
        edit(
            "config.json",
            model_type="evilvlm",
            auto_map={"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel"},
        )
    else:  # a family vlmrl knows, whose model, tokenizer and processor configs all point at the module
        edit("config.json", auto_map={"AutoModelForImageTextToText": "evil.EvilModel"})
        edit("tokenizer_config.json", auto_map={"AutoTokenizer": ["evil.EvilModel", None]})
        edit("processor_config.json", auto_map={"AutoProcessor": "evil.EvilModel"})
    return folder, marker


@pytest.mark.parametrize("placement", ["unknown model type", "known family"])
def test_a_model_folders_code_never_runs_even_when_the_user_answers_yes(placement, tiny_llava, tmp_path):
    folder, marker = evil_folder(tiny_llava, tmp_path, placement)
    argv = [sys.executable, "-m", "vlmrl", "train", "--env", "numberline", *TINY]
    argv += [f"model={folder}", f"out={tmp_path / 'run'}", "total_steps=4", "eval_every=0"]
    code, output = run_in_terminal(argv, tmp_path)
    assert not marker.exists(), f"the folder's code ran; vlmrl printed:\n{output}"
    assert "Do you wish to run the custom code" not in output
    if placement == "unknown model type":
        errors = [line for line in output.splitlines() if line.startswith("vlmrl: error:")]
        assert code == 2 and len(errors) == 1, output
        assert "needs custom code" in errors[0] and "vlmrl never runs" in errors[0] and "evil.EvilConfig" in errors[0]
        assert not (tmp_path / "run").exists()
    else:  # a family vlmrl knows: transformers' own classes load it, the folder's code is ignored (and said so)
        assert code == 0, output
        (notice,) = [line for line in output.splitlines() if line.startswith("vlmrl: note:")]
        assert "ships custom code (auto_map in config.json, tokenizer_config.json, processor_config.json)" in notice
        assert "vlmrl ignores it and loads the llava family with transformers' own classes" in notice


def copy_model(tiny_llava: Path, where: Path) -> Path:
    folder = where / "model"
    shutil.copytree(tiny_llava, folder)
    return folder


def load_error(folder: Path) -> str:
    with pytest.raises(UsageError) as error:
        load_policy(folder, device="cpu")
    message = str(error.value)
    assert len(message.splitlines()) == 1, message
    return message


@pytest.mark.parametrize("keep_bytes", [0, 5, 200, "half"])
def test_a_truncated_or_empty_weights_file_is_named_before_loading(keep_bytes, tiny_llava, tmp_path):
    folder = copy_model(tiny_llava, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2 if keep_bytes == "half" else keep_bytes])
    message = load_error(folder)
    assert "model.safetensors is not readable safetensors" in message and "truncated or corrupt" in message


def test_pickled_weights_are_never_loaded(tiny_llava, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = copy_model(tiny_llava, tmp_path)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    message = load_error(folder)
    assert "holds only pickled weights (pytorch_model.bin), which vlmrl never loads" in message
    assert "convert it to model.safetensors" in message


def test_with_both_formats_only_the_safetensors_are_read(tiny_llava, tmp_path):
    folder = copy_model(tiny_llava, tmp_path)
    (folder / "pytorch_model.bin").write_bytes(b"not a pickle: reading it would fail")
    assert load_policy(folder, device="cpu").family == "llava"


def test_a_missing_shard_is_named(tiny_llava, tmp_path):
    folder = copy_model(tiny_llava, tmp_path)
    (folder / "model.safetensors").rename(folder / "model-00001-of-00002.safetensors")
    index = {"weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    message = load_error(folder)
    assert "lacks the shard model-00002-of-00002.safetensors its index lists" in message


def test_a_bare_config_is_refused_before_a_full_size_model_is_built(tiny_llava, tmp_path):
    """`{"model_type": "llava"}` means transformers' defaults: a 7B model around ~1M stored parameters."""
    folder = copy_model(tiny_llava, tmp_path)
    (folder / "config.json").write_text(json.dumps({"model_type": "llava"}))
    started = time.perf_counter()
    message = load_error(folder)
    assert time.perf_counter() - started < 30
    assert "its config.json describes a 7.06B-parameter model but its weights hold 858k parameters" in message
    assert "use the checkpoint's own config.json" in message


@pytest.mark.parametrize(
    "key,value,message",
    [
        ("num_hidden_layers", 12, "its config.json describes a 2.83M-parameter model but its weights hold 858k"),
        (
            "num_hidden_layers",
            3,
            "its weights lack 9 parameter(s) its config.json describes "
            "(first: model.language_model.layers.2.input_layernorm.weight), which would start at random",
        ),
        (
            "intermediate_size",
            400,
            "6 weight(s) have other shapes than its config.json describes "
            "(first: model.language_model.layers.0.mlp.down_proj.weight is [128, 384] in the weights, [128, 400]",
        ),
    ],
)
def test_a_config_with_other_sizes_than_its_weights_is_refused(key, value, message, tiny_llava, tmp_path, capfd):
    folder = copy_model(tiny_llava, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["text_config"][key] = value
    (folder / "config.json").write_text(json.dumps(config))
    assert message in load_error(folder)
    assert "MISSING" not in capfd.readouterr().err  # transformers' own report table stays off the console
