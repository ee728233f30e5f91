"""Checkpoints: exact resume (weights, optimizer, scheduler, every RNG), keep-last-M, crash
safety of the atomic save, corrupt checkpoints skipped with one-line errors, and no unpickling."""

from __future__ import annotations

import ast
import json
import math
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch
from torch import nn

from vlmrl.infra import checkpoint as ckpt
from vlmrl.infra.checkpoint import (
    CheckpointWarning,
    capture_rng,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    resume_checkpoint,
    save_checkpoint,
)
from vlmrl.infra.checkpoint.manifest import manifest_digest
from vlmrl.infra.errors import UsageError


# ---------------------------------------------------------------- a tiny training run that draws from every RNG
class Run:
    """A small model trained on data drawn from python, numpy, torch global RNGs and two named generators."""

    def __init__(self, seed: int, optimizer: str = "adamw", schedule: str = "lambda") -> None:
        torch.manual_seed(seed)
        self.model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Dropout(0.2), nn.Linear(16, 1))
        params = self.model.parameters()
        if optimizer == "adamw":
            self.optimizer = torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1)
        elif optimizer == "adam":
            self.optimizer = torch.optim.Adam(params, lr=1e-2, amsgrad=True)
        else:
            self.optimizer = torch.optim.SGD(params, lr=1e-2, momentum=0.9, nesterov=True)
        if schedule == "lambda":
            self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda u: 0.8**u)
        else:
            self.scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=10, eta_min=1e-4)
        self.generators = {
            "batches": torch.Generator().manual_seed(seed + 1),
            "targets": np.random.default_rng(seed + 2),
        }

    def train(self, updates: int) -> list[float]:
        """Train and return the draws, so RNG continuity is checked apart from the weights."""
        draws = []
        for _ in range(updates):
            x = torch.randn(8, 4, generator=self.generators["batches"])
            shift = float(self.generators["targets"].normal())
            scale = random.random() + np.random.rand()
            y = scale * x.sum(1, keepdim=True) + shift
            loss = ((self.model(x) - y) ** 2).mean()  # dropout draws from the torch global RNG
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            draws += [shift, scale, float(x[0, 0])]
        return draws

    def weights(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def save(run: Run, run_dir: Path, step: int, keep: int | None = 3, **state) -> Path:
    return save_checkpoint(
        run_dir,
        step,
        {"model": run.model.state_dict()},
        run.optimizer,
        run.scheduler,
        {"update": step, **state},
        keep=keep,
        generators=run.generators,
    )


def restore(run: Run, path: Path) -> ckpt.LoadedCheckpoint:
    loaded = load_checkpoint(path, run.optimizer, run.scheduler, run.generators)
    run.model.load_state_dict(loaded.tensors["model"])
    return loaded


# ---------------------------------------------------------------- exact resume
@pytest.mark.parametrize(("optimizer", "schedule"), [("adamw", "lambda"), ("adam", "cosine"), ("sgd", "lambda")])
def test_resume_continues_bit_identically(tmp_path: Path, optimizer: str, schedule: str) -> None:
    original = Run(0, optimizer, schedule)
    original.train(3)
    path = save(original, tmp_path, 3, note="hi")
    expected_draws = original.train(4)
    expected = original.weights()

    resumed = Run(99, optimizer, schedule)  # other init, other RNG streams: all must be overwritten
    loaded = restore(resumed, path)
    assert loaded.step == 3 and loaded.state == {"update": 3, "note": "hi"} and loaded.path == path
    assert resumed.train(4) == expected_draws
    for name, value in resumed.weights().items():
        assert torch.equal(value, expected[name]), name
    assert resumed.scheduler.get_last_lr() == original.scheduler.get_last_lr()
    assert resumed.scheduler.last_epoch == original.scheduler.last_epoch == 7


def test_optimizer_state_keeps_types(tmp_path: Path) -> None:
    run = Run(0, "adamw")
    run.train(2)
    before = run.optimizer.state_dict()
    path = save(run, tmp_path, 2)
    other = Run(1, "adamw")
    restore(other, path)
    after = other.optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]  # betas stays a tuple, params stay ints
    assert set(after["state"]) == set(before["state"]) == {0, 1, 2, 3}
    for index, entry in before["state"].items():
        for key, value in entry.items():
            restored = after["state"][index][key]
            assert type(restored) is type(value) and restored.dtype == value.dtype, key
            assert torch.equal(restored, value), key
    on_disk = json.loads((path / "optimizer.json").read_text())
    assert on_disk["state"]["__dict__"][0][1]["step"] == {"__tensor__": "state.0.step"}


def test_rng_states_restored_without_a_model(tmp_path: Path) -> None:
    gens = {
        "torch": torch.Generator().manual_seed(3),
        "numpy": np.random.default_rng(4),
        "mt": np.random.Generator(np.random.MT19937(5)),
        "legacy": np.random.RandomState(6),
        "python": random.Random(7),
    }
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    path = save_checkpoint(tmp_path, 0, {}, state={}, generators=gens)

    def draw() -> list:
        return [
            random.random(),
            float(np.random.standard_normal()),  # uses the cached gaussian, too
            float(torch.rand(())),
            float(torch.rand((), generator=gens["torch"])),
            int(gens["numpy"].integers(1 << 62)),
            int(gens["mt"].integers(1 << 62)),
            float(gens["legacy"].standard_normal()),
            gens["python"].random(),
        ]

    first = draw()
    load_checkpoint(path, generators=gens)
    assert draw() == first


def test_each_rank_of_a_distributed_run_gets_its_own_rngs_back(tmp_path: Path) -> None:
    """Rank 0's RNGs as one process saves them, rank 1's (taken by `capture_rng` there) beside them."""
    minibatch = torch.Generator()

    def capture(seed: int) -> tuple:
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        minibatch.manual_seed(seed)
        return capture_rng({"minibatch": minibatch})

    def draw() -> list:
        return [
            random.random(),
            float(np.random.rand()),
            float(torch.rand(())),
            float(torch.rand((), generator=minibatch)),
        ]

    rank_1 = capture(11)
    expected_1 = draw()
    capture(10)
    path = save_checkpoint(tmp_path, 1, {}, state={}, generators={"minibatch": minibatch}, other_ranks_rng=[rank_1])
    expected_0 = draw()
    assert {"rng.json", "rng-1.json", "rng-1.safetensors"} <= set(
        json.loads((path / "state.json").read_text())["files"]
    )
    load_checkpoint(path, generators={"minibatch": minibatch}, rank=1)
    assert draw() == expected_1
    load_checkpoint(path, generators={"minibatch": minibatch})
    assert draw() == expected_0
    with pytest.raises(ValueError, match="cannot name a weights file"):
        save_checkpoint(tmp_path, 2, {"rng-1": {}}, state={})


def test_encode_decode_round_trip() -> None:
    value = {
        0: {"step": torch.tensor(3.0), "buf": torch.arange(4, dtype=torch.bfloat16)},
        "groups": [{"betas": (0.9, 0.99), "params": [0, 1], "lr": 1e-3}],
        "__tensor__": "a user key that looks like a marker",
        (1, 2): None,
        "array": np.arange(3, dtype=np.uint32),
        "scalar": np.float32(0.5),
        "inf": math.inf,
    }
    tensors: dict[str, torch.Tensor] = {}
    encoded = ckpt.encode(value, tensors)
    back = ckpt.decode(json.loads(json.dumps(encoded)), tensors)
    assert set(tensors) == {"0.step", "0.buf"}
    assert back[0]["buf"].dtype == torch.bfloat16 and torch.equal(back[0]["step"], torch.tensor(3.0))
    assert back["groups"] == value["groups"] and back["__tensor__"] == value["__tensor__"] and back[(1, 2)] is None
    assert back["array"].dtype == np.uint32 and back["array"].tolist() == [0, 1, 2]
    assert type(back["scalar"]) is np.float32 and back["inf"] == math.inf
    with pytest.raises(TypeError, match="cannot store a function \\(at 'fn'\\)"):
        ckpt.encode({"fn": lambda: 0}, {})


# ---------------------------------------------------------------- layout and keep-last-M
def test_layout_and_manifest(tmp_path: Path) -> None:
    run = Run(0)
    run.train(1)
    path = save(run, tmp_path, 7)
    assert path == tmp_path / "checkpoints" / "step-7"
    names = {p.name for p in path.iterdir()}
    assert names == {"model.safetensors", "optimizer.json", "optimizer.safetensors", "scheduler.json", "rng.json",
                     "rng.safetensors", "state.json"}  # fmt: skip
    doc = json.loads((path / "state.json").read_text())
    assert doc["format"] == "vlmrl-checkpoint" and doc["version"] == 2 and doc["step"] == 7
    assert doc["digest"] == manifest_digest(doc) and len(doc["digest"]) == 64
    assert doc["weights"] == ["model"] and set(doc["files"]) == names - {"state.json"}
    assert doc["files"]["model.safetensors"]["bytes"] == (path / "model.safetensors").stat().st_size


def test_keeps_the_newest(tmp_path: Path) -> None:
    run = Run(0)
    for step in (10, 20, 30, 40, 50):
        save(run, tmp_path, step, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-40", "step-50"]
    for step in (60, 70):
        save(run, tmp_path, step, keep=None)
    assert len(list_checkpoints(tmp_path)) == 4


def test_never_deletes_the_one_just_written_nor_newer_ones(tmp_path: Path) -> None:
    run = Run(0)
    for step in (10, 20, 30):
        save(run, tmp_path, step)
    save(run, tmp_path, 15, keep=1)  # a run resumed from an earlier checkpoint
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step-15", "step-20", "step-30"]


def test_saving_the_same_step_again_replaces_it(tmp_path: Path) -> None:
    run = Run(0)
    save(run, tmp_path, 5, mark=1)
    save(run, tmp_path, 5, mark=2)
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-5"]
    assert load_checkpoint(tmp_path / "checkpoints" / "step-5").state["mark"] == 2


def test_bad_arguments(tmp_path: Path) -> None:
    run = Run(0)
    with pytest.raises(ValueError, match="optimizer"):
        save_checkpoint(tmp_path, 1, {"optimizer": {}}, state={})
    with pytest.raises(ValueError, match="keep"):
        save(run, tmp_path, 1, keep=0)
    with pytest.raises(TypeError, match="JSON"):
        save(run, tmp_path, 1, when=object())
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


# ---------------------------------------------------------------- crashes during a save
def test_crash_while_writing_leaves_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(0)
    first = save(run, tmp_path, 1)
    real_save, calls = safetensors.torch.save_file, []

    def dying_save(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # the model file is written, the optimizer's is not
            raise OSError(28, "No space left on device")
        return real_save(*args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", dying_save)
    with pytest.raises(OSError, match="No space"):
        save(run, tmp_path, 2)
    monkeypatch.undo()
    assert list_checkpoints(tmp_path) == [first] and latest_checkpoint(tmp_path) == first
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1"]  # partial folder removed
    restore(Run(5), first)


def test_killed_during_a_save_leaves_a_stale_temp_folder_that_the_next_save_removes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = Run(0)
    first = save(run, tmp_path, 1)

    def killed(tmp: Path, final: Path) -> None:
        raise KeyboardInterrupt  # killed just before the rename

    monkeypatch.setattr(ckpt.store, "_publish", killed)
    monkeypatch.setattr(ckpt.store, "_discard", lambda path: None)  # a killed process cleans nothing up
    with pytest.raises(KeyboardInterrupt):
        save(run, tmp_path, 2)
    monkeypatch.undo()
    stale = [p for p in (tmp_path / "checkpoints").iterdir() if p.name.startswith(".tmp-")]
    assert len(stale) == 1 and (stale[0] / "state.json").is_file()  # even a finished temp folder is not a checkpoint
    assert list_checkpoints(tmp_path) == [first] and latest_checkpoint(tmp_path) == first
    assert load_checkpoint(tmp_path).path == first  # a run directory resolves to its newest intact checkpoint

    second = save(run, tmp_path, 2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-1", "step-2"]
    assert latest_checkpoint(tmp_path) == second


# ---------------------------------------------------------------- corrupt checkpoints
def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-100])


def flip_a_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated optimizer": ("optimizer.safetensors", truncate, "optimizer.safetensors has"),
    "garbled state.json": (
        "state.json",
        lambda p: p.write_text('{"format": "vlmrl-checkpoint", "ver'),
        "not valid JSON",
    ),
    "deleted rng file": ("rng.safetensors", Path.unlink, "rng.safetensors is missing"),
    "flipped weight byte": ("model.safetensors", flip_a_byte, "model.safetensors does not match the sha256"),
    "missing state.json": ("state.json", Path.unlink, "state.json is missing"),
    "edited state.json": (
        "state.json",
        lambda p: p.write_text(p.read_text().replace('"update": 40', '"update": 41')),
        "state.json does not match its digest: it was edited or damaged after it was written",
    ),
}


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_corrupt_checkpoint_is_skipped_and_explained(tmp_path: Path, damage) -> None:
    file, harm, reason = damage
    run = Run(0)
    good = save(run, tmp_path, 30)
    run.train(1)
    bad = save(run, tmp_path, 40)
    harm(bad / file)

    skipped: list[str] = []
    assert latest_checkpoint(tmp_path, on_skip=skipped.append) == good
    assert len(skipped) == 1 and str(bad) in skipped[0] and reason in skipped[0] and "step-30" in skipped[0]
    with pytest.warns(CheckpointWarning, match=reason):
        assert resume_checkpoint(tmp_path) == good

    with pytest.raises(UsageError) as error:
        load_checkpoint(bad, Run(1).optimizer)
    message = str(error.value)
    assert "\n" not in message and reason in message
    assert message.startswith(f"checkpoint {bad} is corrupt (") and f"resume from {good}" in message
    restore(Run(1), good)


def test_a_checkpoint_copied_or_renamed_to_another_step_is_skipped(tmp_path: Path) -> None:
    import shutil

    run = Run(0)
    save(run, tmp_path, 11)
    shutil.copytree(tmp_path / "checkpoints" / "step-11", tmp_path / "checkpoints" / "step-13")
    skipped: list[str] = []
    assert latest_checkpoint(tmp_path, on_skip=skipped.append).name == "step-11"
    (line,) = skipped
    assert "step-13 is misnamed (its state.json is of step 11: it was copied or renamed" in line
    assert "resuming from step-11" in line


def test_a_state_the_trainer_rejects_counts_as_corrupt(tmp_path: Path) -> None:
    run = Run(0)
    good, bad = save(run, tmp_path, 1, update=1), save(run, tmp_path, 2, update=7)

    def check(step: int, state: dict) -> None:
        if state["update"] != step:
            raise ValueError(f"update is {state['update']}, the checkpoint's step {step}")

    skipped: list[str] = []
    assert latest_checkpoint(tmp_path, on_skip=skipped.append, check=check) == good
    assert skipped == [
        f"checkpoint {bad} holds an invalid state (state.json: update is 7, the checkpoint's step 2); "
        "resuming from step-1, the newest intact one"
    ]
    assert resume_checkpoint(tmp_path, on_skip=skipped.append, check=check) == good


def test_an_older_format_without_a_digest_is_named_as_such(tmp_path: Path) -> None:
    path = save(Run(0), tmp_path, 1)
    doc = json.loads((path / "state.json").read_text())
    del doc["digest"]
    (path / "state.json").write_text(json.dumps({**doc, "version": 1}))
    with pytest.raises(UsageError, match=r"step-1 is from an older vlmrl \(format version 1 has no digest"):
        load_checkpoint(path)


def test_a_disk_filling_during_a_save_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    """safetensors reports a full disk as its own SafetensorError; the save says OSError ENOSPC, as a
    file write does, leaves no partial folder, and the earlier checkpoint stays the newest intact one."""
    import errno

    from safetensors import SafetensorError

    run = Run(0)
    first = save(run, tmp_path, 1)

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(OSError) as error:
        save(run, tmp_path, 2)
    assert error.value.errno == errno.ENOSPC and error.value.strerror == "No space left on device"
    assert error.value.filename.endswith("model.safetensors")
    assert [p.name for p in (tmp_path / "checkpoints").iterdir()] == ["step-1"]
    monkeypatch.undo()
    assert resume_checkpoint(tmp_path) == first


def test_size_only_check_misses_a_flipped_byte_but_loading_catches_it(tmp_path: Path) -> None:
    run = Run(0)
    save(run, tmp_path, 1)
    path = save(run, tmp_path, 2)
    flip_a_byte(path / "model.safetensors")
    assert latest_checkpoint(tmp_path, deep=False) == path
    with pytest.raises(UsageError, match="sha256"):
        load_checkpoint(path)


def test_nothing_to_resume(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path) is None and list_checkpoints(tmp_path) == []
    with pytest.raises(UsageError, match=r"^no checkpoint in .*checkpoints; nothing to resume — start a new run"):
        resume_checkpoint(tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")


def test_every_checkpoint_corrupt(tmp_path: Path) -> None:
    run = Run(0)
    paths = [save(run, tmp_path, step) for step in (1, 2)]
    for path in paths:
        truncate(path / "rng.json")
    skipped: list[str] = []
    assert latest_checkpoint(tmp_path, on_skip=skipped.append) is None
    assert len(skipped) == 2 and all("no intact checkpoint is left" in line for line in skipped)
    with pytest.raises(UsageError, match=r"no intact checkpoint in .*step-2 is corrupt.*1 older one.*without --resume"):
        resume_checkpoint(tmp_path)
    with pytest.raises(UsageError, match="no earlier intact checkpoint"):
        load_checkpoint(tmp_path / "checkpoints" / "step-1")


def test_newer_format_is_named_as_such(tmp_path: Path) -> None:
    path = save(Run(0), tmp_path, 1)
    doc = json.loads((path / "state.json").read_text())
    (path / "state.json").write_text(json.dumps({**doc, "version": 99}))
    with pytest.raises(UsageError, match=r"step-1 is from a newer vlmrl \(format version 99.*upgrade vlmrl"):
        load_checkpoint(path)


# ---------------------------------------------------------------- mismatches with the resuming run
def test_mismatched_optimizer_and_generators_are_usage_errors(tmp_path: Path) -> None:
    run = Run(0)
    path = save(run, tmp_path, 1)
    other = torch.optim.AdamW(nn.Linear(2, 2).parameters())
    with pytest.raises(UsageError, match="does not fit this run's optimizer"):
        load_checkpoint(path, other)
    with pytest.raises(UsageError, match="no generator 'env'"):
        load_checkpoint(path, generators={"env": torch.Generator()})
    with pytest.raises(UsageError, match="numpy generator 'targets', this run a torch one"):
        load_checkpoint(path, generators={"targets": torch.Generator()})
    weights_only = save_checkpoint(tmp_path / "other", 1, {"model": run.model.state_dict()}, state={})
    with pytest.raises(UsageError, match="holds no optimizer state"):
        load_checkpoint(weights_only, run.optimizer)


# ---------------------------------------------------------------- nothing is unpickled
def test_loading_never_unpickles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = Run(0)
    path = save(run, tmp_path, 1)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint load unpickled data")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, forbidden)
    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(np, "load", forbidden)
    restore(Run(1), path)


def test_package_has_no_unpickling_calls() -> None:
    modules = sorted(Path(ckpt.__file__).parent.glob("*.py"))
    assert {path.stem for path in modules} >= {"__init__", "codec", "rng", "manifest", "store"}
    for module in modules:
        tree = ast.parse(module.read_text())
        imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import | ast.ImportFrom)
                    for alias in node.names} | {node.module.split(".")[0] for node in ast.walk(tree)
                                                if isinstance(node, ast.ImportFrom) and node.module}  # fmt: skip
        assert not imported & {"pickle", "dill", "joblib", "marshal", "shelve", "cloudpickle"}, module.name
        loads = [
            ast.unparse(node) for node in ast.walk(tree) if isinstance(node, ast.Attribute) and node.attr == "load"
        ]
        assert loads == [], module.name  # no torch.load, np.load, pickle.load


# ---------------------------------------------------------------- CUDA (only where there is a GPU)
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_rng_and_optimizer_state(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(4, 2).cuda()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    gen = torch.Generator(device="cuda").manual_seed(1)

    def step() -> float:
        x = torch.randn(8, 4, device="cuda", generator=gen) + torch.rand(8, 4, device="cuda")
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return float(loss)

    step()
    path = save_checkpoint(tmp_path, 1, {"model": model.state_dict()}, optimizer, state={}, generators={"g": gen})
    expected = [step() for _ in range(3)]
    loaded = load_checkpoint(path, optimizer, generators={"g": gen})
    model.load_state_dict(loaded.tensors["model"])
    assert loaded.notes == [] and [step() for _ in range(3)] == expected
    assert optimizer.state_dict()["state"][0]["exp_avg"].device.type == "cuda"
