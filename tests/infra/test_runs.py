"""Runs never mix and never lose what they wrote: one run and one process per folder, checkpoints
taken only for what they are (their own step, an untouched and well-formed state), a full disk
one line before the run starts or with the surviving checkpoint named, every bad input one line."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import safetensors.torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tiny_runs import TINY
from vlmrl.cli import main, parse_args, quiet_writer_threads
from vlmrl.infra import checkpoint as ckpt
from vlmrl.infra.checkpoint.manifest import manifest_digest
from vlmrl.infra.errors import UsageError
from vlmrl.infra.metrics import ConsoleProgress, deterministic_view
from vlmrl.infra.runs import LOCK_FILE, RunFolder, holds_a_run
from vlmrl.recipes.config import load_config
from vlmrl.recipes.ppo import train


def tiny_config(model, run_dir, *extra: str):
    return load_config(env="numberline", overrides=[*TINY, f"model={model}", f"out={run_dir}", *extra])


def records(run_dir: Path) -> list[dict]:
    return [deterministic_view(json.loads(line)) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def runs(tiny_llava, tmp_path_factory):
    """An uninterrupted 3-update run, and the same run stopped after 2 (checkpoints step-1 and step-2)."""
    root = tmp_path_factory.mktemp("runs")
    extra = ("total_steps=12", "eval_every=2")
    whole = train(tiny_config(tiny_llava, root / "whole", *extra))
    stopped = train(tiny_config(tiny_llava, root / "stopped", *extra), stop_after=2)
    return whole, stopped


def copy_run(stopped: Path, where: Path) -> Path:
    run_dir = where / "run"
    shutil.copytree(stopped, run_dir)
    (run_dir / "config.yaml").write_text((run_dir / "config.yaml").read_text().replace(str(stopped), str(run_dir)))
    return run_dir


# ---------------------------------------------------------------- one run per folder
def test_a_new_run_into_a_folder_holding_a_run_is_refused_and_touches_nothing(runs, tiny_llava, capsys):
    _, stopped = runs
    before = snapshot(stopped)
    code = main(["train", "--env", "numberline", *TINY, f"model={tiny_llava}", f"out={stopped}", "total_steps=4"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.splitlines()) == 1, err
    assert f"run folder '{stopped}' is not empty (it holds checkpoints, config.yaml, curve.png, metrics.jsonl)" in err
    assert f"continue that run with `vlmrl train --resume {stopped}`, replace it with --overwrite" in err
    assert snapshot(stopped) == before


def test_overwrite_starts_clean_so_a_resume_continues_the_new_run(runs, tiny_llava, tmp_path):
    _, stopped = runs
    run_dir = copy_run(stopped, tmp_path)
    train(tiny_config(tiny_llava, run_dir, "total_steps=4", "seed=5"), overwrite=True)
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-1"]  # the old step-2 is gone
    assert len(records(run_dir)) == 1 and "seed: 5" in (run_dir / "config.yaml").read_text()


def test_overwrite_never_deletes_a_folder_that_is_not_a_run(tiny_llava, tmp_path):
    folder = tmp_path / "notes"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(UsageError, match=r"holds files that are not a vlmrl run \(thesis.tex\); --overwrite replaces"):
        train(tiny_config(tiny_llava, folder, "total_steps=4"), overwrite=True)
    assert (folder / "thesis.tex").read_text() == "years of work"


def test_a_bench_learn_folder_killed_before_its_summary_is_still_a_run(tmp_path):
    (tmp_path / "sft").mkdir()
    (tmp_path / "sft" / "config.yaml").write_text("env: numberline\n")
    assert holds_a_run(tmp_path)
    with RunFolder(tmp_path, overwrite=True):
        assert [p.name for p in tmp_path.iterdir()] == [LOCK_FILE]


def test_sft_and_bench_learn_refuse_a_folder_holding_a_run_too(runs, capsys):
    _, stopped = runs
    assert main(["sft", "--env", "numberline", f"out={stopped}"]) == 2
    assert "is not empty" in capsys.readouterr().err
    assert main(["bench", "learn", "--env", "numberline", "--out", str(stopped)]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "replace it with --overwrite, or choose another --out" in err


def test_a_failed_start_leaves_no_folder_behind(tmp_path):
    missing_model = tmp_path / "no-such-model"
    config = load_config(env="numberline", overrides=[*TINY, f"model={missing_model}", f"out={tmp_path / 'run'}"])
    with pytest.raises(UsageError, match="does not exist"):
        train(config)
    assert not (tmp_path / "run").exists()


# ---------------------------------------------------------------- one process per folder
def test_a_second_process_on_the_same_run_is_refused(runs, tmp_path):
    _, stopped = runs
    run_dir = copy_run(stopped, tmp_path)
    with RunFolder(run_dir, resume=True):
        with pytest.raises(UsageError, match=r"is in use by another vlmrl process; wait for it to finish or stop it"):
            train(resume=run_dir)


def test_the_lock_dies_with_a_killed_process(tmp_path):
    holder = subprocess.Popen(
        [sys.executable, "-c", "import time; from vlmrl.infra.runs import RunFolder; "
         f"held = RunFolder({str(tmp_path)!r}, resume=True).__enter__(); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(UsageError, match="in use by another vlmrl process"):
        RunFolder(tmp_path, resume=True).__enter__()
    holder.kill()  # kill -9: nothing of the holder runs any more
    holder.wait()
    with RunFolder(tmp_path, resume=True):
        pass


def test_leftovers_of_a_killed_save_are_removed_when_the_run_is_resumed(runs, tmp_path):
    _, stopped = runs
    run_dir = copy_run(stopped, tmp_path)
    leftover = run_dir / "checkpoints" / ".tmp-step-3-deadbeef"
    leftover.mkdir()
    (leftover / "adapter.safetensors").write_bytes(b"half")
    train(resume=run_dir, stop_after=2)  # nothing left to train before update 2: only the claim runs
    assert not leftover.exists()


def test_a_run_killed_before_its_first_checkpoint_resumes_from_its_beginning(runs, tmp_path, capsys):
    """Its config.yaml is there, its metrics of updates not checkpointed too: --resume starts it over
    (a new run into the folder would be refused, so --resume must not be a dead end)."""
    whole, stopped = runs
    run_dir = copy_run(stopped, tmp_path)
    shutil.rmtree(run_dir / "checkpoints")
    train(resume=run_dir)
    assert "has no checkpoint yet; the run starts again from its beginning" in capsys.readouterr().out
    assert records(run_dir) == records(whole)


# ---------------------------------------------------------------- checkpoints taken only for what they are
def reseal(path: Path, change) -> None:
    """Edit a checkpoint's state.json and write a matching digest, as a forger (or a bug) would."""
    doc = json.loads((path / "state.json").read_text())
    change(doc)
    doc["digest"] = manifest_digest(doc)
    (path / "state.json").write_text(json.dumps(doc))


def edit_update(path: Path) -> None:
    (path / "state.json").write_text((path / "state.json").read_text().replace('"update": 2', '"update": 1'))


def set_action(doc: dict) -> None:
    doc["state"]["rollouts"]["tracks"][0]["actions"] = [7]


def copy_step_1_as_step_2(path: Path) -> None:
    shutil.rmtree(path)
    shutil.copytree(path.parent / "step-1", path)


BAD_STATES = {
    "edited update counter": (edit_update, "state.json does not match its digest"),
    "forged update counter": (
        lambda p: reseal(p, lambda d: d["state"].update(update=3, env_steps=12)),
        "holds an invalid state (state.json: update is 3, the checkpoint's step 2",
    ),
    "missing key": (
        lambda p: reseal(p, lambda d: d["state"].pop("window")),
        "holds an invalid state (state.json: window: Field required)",
    ),
    "out-of-range action id": (
        lambda p: reseal(p, set_action),
        "environment 0's action 0 has id 7, but its state offers 2 actions",
    ),
    "wrong type": (
        lambda p: reseal(p, lambda d: d["state"]["rollouts"]["tracks"][1].update(seed="12")),
        "rollouts.tracks.1.seed: Input should be a valid integer",
    ),
    "renamed copy": (copy_step_1_as_step_2, "step-2 is misnamed (its state.json is of step 1"),
}


@pytest.mark.parametrize("damage", BAD_STATES.values(), ids=BAD_STATES.keys())
def test_a_bad_state_falls_back_to_the_previous_checkpoint_and_the_run_still_matches(damage, runs, tmp_path, capsys):
    harm, reason = damage
    whole, stopped = runs
    run_dir = copy_run(stopped, tmp_path)
    harm(run_dir / "checkpoints" / "step-2")
    train(resume=run_dir)
    skipped = [line for line in capsys.readouterr().out.splitlines() if "step-2" in line]
    assert len(skipped) == 1 and reason in skipped[0] and "resuming from step-1" in skipped[0], skipped
    assert records(run_dir) == records(whole)


# ---------------------------------------------------------------- the disk
def test_a_disk_too_small_for_the_run_is_one_line_before_any_work(tiny_llava, tmp_path, monkeypatch):
    import vlmrl.infra.runs

    monkeypatch.setattr(
        vlmrl.infra.runs.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 4096)
    )
    with pytest.raises(UsageError) as error:
        train(tiny_config(tiny_llava, tmp_path / "run", "total_steps=4"))
    assert str(error.value).startswith(
        f"not enough disk space for '{tmp_path / 'run'}': 4.0 KiB free, the run needs about"
    )
    assert "(3 checkpoints and one being written, and its logs); free some space or choose another out" in str(
        error.value
    )
    assert not (tmp_path / "run").exists()


def test_a_disk_filling_mid_run_names_the_surviving_checkpoint_and_the_run_continues(
    runs, tiny_llava, tmp_path, monkeypatch, capsys
):
    from safetensors import SafetensorError

    whole, _ = runs
    run_dir = tmp_path / "run"
    original, calls = safetensors.torch.save_file, []

    def fills_up(tensors, filename, metadata=None):
        calls.append(filename)
        if "step-2" in filename:
            raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")
        original(tensors, filename, metadata=metadata)

    monkeypatch.setattr(safetensors.torch, "save_file", fills_up)
    argv = ["train", "--env", "numberline", *TINY, f"model={tiny_llava}", f"out={run_dir}", "total_steps=12"]
    code = main([*argv, "eval_every=2"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1].startswith(f"vlmrl: error: cannot write the run in '{run_dir}': No space left on")
    assert err[-1].endswith(f"step-1 is intact: free some space and continue with `vlmrl train --resume {run_dir}`")
    assert [p.name for p in ckpt.list_checkpoints(run_dir)] == ["step-1"]
    monkeypatch.undo()
    train(resume=run_dir)
    assert records(run_dir) == records(whole)


def test_tensorboards_thread_traceback_gives_way_to_the_one_line():
    class _AsyncWriterThread(threading.Thread):  # the name of TensorBoard's event-writer thread
        def run(self) -> None:
            raise OSError(28, "No space left on device")

    shown: list[threading.ExceptHookArgs] = []
    previous = threading.excepthook
    threading.excepthook = quiet_writer_threads(shown.append)
    try:
        for thread in (_AsyncWriterThread(), threading.Thread(target=lambda: 1 / 0)):
            thread.start()
            thread.join()
    finally:
        threading.excepthook = previous
    assert [type(args.exc_value) for args in shown] == [ZeroDivisionError]  # only the writer's copy is dropped


# ---------------------------------------------------------------- the command line
def test_the_console_counts_updates_from_the_start_of_the_run_after_a_resume():
    stream = io.StringIO()
    with ConsoleProgress(48, "numberline", stream=stream, print_every=1, updates_done=11, steps_done=44) as progress:
        progress.update(48, {})
    assert stream.getvalue().startswith("numberline update 12  env steps 48/48 (100%)")


def test_an_override_after_an_option_is_an_override():
    args = parse_args(["train", "--env", "numberline", "--init", "runs/sft", "lr=1e-4", "seed=3"])
    assert args.init == "runs/sft" and args.overrides == ["lr=1e-4", "seed=3"]
    args = parse_args(["sft", "--env", "numberline", "epochs=1", "--behaviour", "expert", "episodes=3"])
    assert args.overrides == ["epochs=1", "episodes=3"] and args.behaviour == "expert"
    with pytest.raises(UsageError, match=r"unrecognized arguments: --bogus"):
        parse_args(["train", "--env", "numberline", "--init", "x", "--bogus"])
    with pytest.raises(UsageError, match=r"unrecognized arguments: extra"):
        parse_args(["eval", "--env", "numberline", "extra"])


def test_play_into_a_folder_writes_the_gif_there(tmp_path, capsys):
    assert main(["play", "--env", "numberline", "--seed", "4", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "numberline-seed4.gif").is_file()
    assert main(["play", "--env", "numberline", "--out", str(tmp_path / "episode.txt")]) == 2
    assert "must name a .gif (or an animated .png or .webp) file, or a folder" in capsys.readouterr().err


def test_a_run_whose_config_is_not_text_is_one_line_on_resume(runs, tmp_path, capsys):
    _, stopped = runs
    run_dir = copy_run(stopped, tmp_path)
    (run_dir / "config.yaml").write_bytes("env: numberline\n# réglages\n".encode("latin-1"))
    assert main(["train", "--resume", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert (
        err == f"vlmrl: error: config '{run_dir / 'config.yaml'}' is not text (YAML is UTF-8); is it the right file?\n"
    )


def test_bad_values_fail_before_the_model_loads(tmp_path, capsys):
    started = time.perf_counter()
    for bad in ("temperature=1e-300", "lr=inf", "seed=-1", "out=runs/{foo}", "device=cuda:abc", "total_steps=1e100"):
        assert main(["train", "--env", "numberline", f"out={tmp_path / 'run'}", bad]) == 2
        assert len(capsys.readouterr().err.splitlines()) == 1
    assert time.perf_counter() - started < 20 and not (tmp_path / "run").exists()


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


def leaf_paths(value, path=()):
    """Every place in a JSON structure that a value could be swapped into."""
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from leaf_paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaf_paths(item, (*path, index))


@pytest.fixture(scope="module")
def saved_state(runs):
    """A real trainer state (step 2 of the stopped run) and a run shaped like the one that wrote it."""
    from types import SimpleNamespace

    from vlmrl.games import get_task
    from vlmrl.infra.distributed import ALONE
    from vlmrl.recipes.rollout import EpisodeWindow, Rollouts

    _, stopped = runs
    doc = json.loads((stopped / "checkpoints" / "step-2" / "state.json").read_text())
    config = load_config(stopped / "config.yaml")
    run = SimpleNamespace(
        config=config,
        run_dir=stopped,
        world=ALONE,
        window=EpisodeWindow(config.success_window),
        rollouts=Rollouts(get_task(config.env), config.num_envs, config.seed),
    )
    return run, doc["state"]


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_any_damage_to_a_saved_state_is_a_valueerror_naming_it(saved_state, data):
    """A state with any one value swapped for any JSON value passes the check only if it is still
    one this run could have written; otherwise the check says what is wrong, and nothing else breaks."""
    import copy

    from vlmrl.recipes.ppo import check_state

    run, state = saved_state
    check_state(run, 2, state)
    damaged = copy.deepcopy(state)
    path = data.draw(st.sampled_from(list(leaf_paths(damaged))[1:]))
    target = damaged
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(JSON_VALUES)
    try:
        check_state(run, 2, damaged)
    except ValueError as error:
        assert len(str(error).splitlines()) == 1 and str(error)
    else:  # accepted: then restoring it works too
        run.rollouts.load_state_dict(damaged["rollouts"])
        run.window.load_state_dict(damaged["window"])
