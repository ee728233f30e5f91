"""The run's reports: metrics.jsonl, TensorBoard events, curve.png and the console line."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vlmrl.infra import metrics
from vlmrl.infra.metrics import (
    ConsoleProgress,
    MetricsLogger,
    deterministic_view,
    format_metrics,
    plot_curves,
    read_metrics,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def strict_lines(path) -> list[dict]:
    """Each line parsed as standard JSON: the NaN/Infinity tokens Python would accept are refused."""

    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return [json.loads(line, parse_constant=refuse) for line in path.read_text().splitlines()]


def train_values(update: int) -> dict[str, float]:
    return {
        "charts/success_rate": update / 10,
        "charts/episodic_return": update - 0.5,
        "losses/approx_kl": 0.01 * update,
        "charts/SPS": 1000.0 + update,  # a wall-clock figure: differs between runs
    }


def log_updates(logger: MetricsLogger, updates) -> None:
    for update in updates:
        logger.log(update, update * 100, train_values(update))


def scalar_events(run_dir, tag: str) -> list[tuple[int, float]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir))
    accumulator.Reload()
    return [(event.step, pytest.approx(event.value)) for event in accumulator.Scalars(tag)]


# -- metrics.jsonl ------------------------------------------------------------------------------


def test_each_log_call_appends_one_valid_json_line_with_its_values(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(1, 128, {"charts/success_rate": 0.25, "losses/clipfrac": 0.1})
        logger.log(2, 256, {"charts/success_rate": 0.5, "charts/learning_rate": 3e-4})
        lines = strict_lines(tmp_path / "metrics.jsonl")  # flushed while the logger is still open
    assert [(line["update"], line["env_steps"]) for line in lines] == [(1, 128), (2, 256)]
    assert lines[0]["charts/success_rate"] == 0.25 and lines[0]["losses/clipfrac"] == 0.1
    assert lines[1]["charts/learning_rate"] == 3e-4
    assert all(line["time"] >= 0 for line in lines)
    assert read_metrics(tmp_path) == lines == logger.records()


def test_tensor_and_numpy_scalars_are_written_as_plain_numbers(tmp_path):
    values = {
        "a": torch.tensor(0.5),
        "b": np.float32(0.25),
        "c": np.int64(7),
        "d": torch.tensor([3]),
        "e": np.array(1.5),
        "f": True,
    }
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        logger.log(np.int64(1), torch.tensor(10), values)
    (line,) = strict_lines(tmp_path / "metrics.jsonl")
    assert line == {
        "update": 1,
        "env_steps": 10,
        "time": line["time"],
        "a": 0.5,
        "b": 0.25,
        "c": 7,
        "d": 3,
        "e": 1.5,
        "f": 1,
    }
    assert type(line["c"]) is int and type(line["a"]) is float


def test_nan_and_infinity_are_written_as_null(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, 10, {"nan": math.nan, "inf": torch.tensor(math.inf), "ninf": np.float64(-np.inf), "ok": 1.0})
    (line,) = strict_lines(tmp_path / "metrics.jsonl")
    assert line["nan"] is None and line["inf"] is None and line["ninf"] is None and line["ok"] == 1.0


def test_a_metric_that_is_not_one_number_is_refused_by_name(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        with pytest.raises(TypeError, match="losses/kl"):
            logger.log(1, 10, {"losses/kl": torch.tensor([0.1, 0.2])})
        with pytest.raises(TypeError, match="note"):
            logger.log(1, 10, {"note": "hello"})
        with pytest.raises(ValueError, match="reserved"):
            logger.log(1, 10, {"env_steps": 3})
    assert read_metrics(tmp_path) == []


def test_logging_after_close_is_an_error(tmp_path):
    logger = MetricsLogger(tmp_path, tensorboard=False)
    logger.close()
    logger.close()  # twice is harmless
    with pytest.raises(RuntimeError):
        logger.log(1, 1, {})


def test_deterministic_view_drops_only_the_wall_clock_values():
    record = {
        "update": 3,
        "env_steps": 300,
        "time": 12.5,
        "charts/SPS": 90.0,
        "charts/tokens_per_second": 4000.0,
        "perf/generate_seconds": 1.2,
        "time/update_seconds": 2.0,
        "charts/success_rate": 0.5,
        "losses/approx_kl": 0.01,
        "eval/success_rate": 0.4,
    }
    assert deterministic_view(record) == {
        "update": 3,
        "env_steps": 300,
        "charts/success_rate": 0.5,
        "losses/approx_kl": 0.01,
        "eval/success_rate": 0.4,
    }


# -- resuming -----------------------------------------------------------------------------------


def test_resume_keeps_the_records_up_to_the_checkpoint_and_drops_the_rest(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        log_updates(logger, range(1, 6))
    with MetricsLogger(tmp_path, tensorboard=False, resume=True) as logger:
        assert [r["update"] for r in logger.records()] == [1, 2, 3, 4, 5]
        logger.truncate_after(3)
        assert [r["update"] for r in read_metrics(tmp_path)] == [1, 2, 3]
        log_updates(logger, [4])
    assert [r["update"] for r in strict_lines(tmp_path / "metrics.jsonl")] == [1, 2, 3, 4]


def test_first_log_after_resume_drops_the_abandoned_records_even_without_truncate(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        log_updates(logger, range(1, 6))
        logger.log(5, 500, {"eval/success_rate": 0.5})  # an eval record shares its update's number
    with MetricsLogger(tmp_path, tensorboard=False, resume=True) as logger:
        log_updates(logger, [3, 4])
        logger.log(4, 400, {"eval/success_rate": 0.4})  # not the first log: the update-4 record stays
    assert [r["update"] for r in read_metrics(tmp_path)] == [1, 2, 3, 4, 4]


def test_resumed_run_logs_the_same_deterministic_records_as_an_uninterrupted_one(tmp_path):
    with MetricsLogger(tmp_path / "straight", tensorboard=False) as logger:
        log_updates(logger, range(1, 7))
    with MetricsLogger(tmp_path / "resumed", tensorboard=False) as logger:
        log_updates(logger, range(1, 6))  # crashes after update 5, last checkpoint at update 3
    with MetricsLogger(tmp_path / "resumed", tensorboard=False, resume=True) as logger:
        logger.truncate_after(3)
        log_updates(logger, range(4, 7))
    straight, resumed = read_metrics(tmp_path / "straight"), read_metrics(tmp_path / "resumed")
    assert [deterministic_view(r) for r in resumed] == [deterministic_view(r) for r in straight]
    times = [r["time"] for r in resumed]
    assert times == sorted(times)  # the clock carries on from the kept records


def test_resume_skips_a_line_torn_by_a_crash(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        log_updates(logger, [1, 2])
    with (tmp_path / "metrics.jsonl").open("a") as file:
        file.write('{"update": 3, "env_st')
    with MetricsLogger(tmp_path, tensorboard=False, resume=True) as logger:
        log_updates(logger, [3])
    assert [r["update"] for r in strict_lines(tmp_path / "metrics.jsonl")] == [1, 2, 3]


def test_a_fresh_logger_starts_metrics_jsonl_afresh(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        log_updates(logger, [1, 2])
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        log_updates(logger, [1])
    assert [r["update"] for r in read_metrics(tmp_path)] == [1]


# -- TensorBoard --------------------------------------------------------------------------------


def test_tensorboard_events_hold_each_scalar_at_its_env_step(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        log_updates(logger, [1, 2])
        logger.log(2, 200, {"eval/success_rate": 0.75, "eval/mean_return": None})
    assert list(tmp_path.glob("events.out.tfevents.*"))
    assert scalar_events(tmp_path, "charts/success_rate") == [(100, 0.1), (200, 0.2)]
    assert scalar_events(tmp_path, "eval/success_rate") == [(200, 0.75)]


def test_resumed_tensorboard_curves_do_not_zigzag(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        log_updates(logger, range(1, 6))
    with MetricsLogger(tmp_path, resume=True) as logger:
        logger.truncate_after(3)
        logger.log(4, 400, {"charts/success_rate": 0.9})
    assert scalar_events(tmp_path, "charts/success_rate") == [(100, 0.1), (200, 0.2), (300, 0.3), (400, 0.9)]


def test_a_fresh_run_in_an_old_folder_hides_the_old_tensorboard_events(tmp_path):
    with MetricsLogger(tmp_path) as logger:
        log_updates(logger, range(1, 4))
    with MetricsLogger(tmp_path) as logger:
        logger.log(1, 50, {"charts/success_rate": 0.7})
    assert scalar_events(tmp_path, "charts/success_rate") == [(50, 0.7)]


def test_without_tensorboard_no_event_file_is_written(tmp_path):
    with MetricsLogger(tmp_path, tensorboard=False) as logger:
        log_updates(logger, [1])
    assert not list(tmp_path.glob("events.out.tfevents.*"))


# -- curve.png ----------------------------------------------------------------------------------


def test_curve_png_is_a_readable_picture_after_close(tmp_path):
    with MetricsLogger(tmp_path, title="NumberLine", tensorboard=False, ceiling=1.0, reference=0.89) as logger:
        log_updates(logger, range(1, 30))
    data = (tmp_path / "curve.png").read_bytes()
    assert data.startswith(PNG_SIGNATURE) and len(data) > 10_000
    with Image.open(tmp_path / "curve.png") as image:
        image.verify()
        assert image.size[0] >= 800 and image.size[1] >= 300
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "metrics.jsonl"]  # no temp files left


def test_curve_shows_eval_points_with_their_interval_and_the_reference_lines():
    records = [{"update": u, "env_steps": 100 * u, **train_values(u)} for u in range(1, 5)]
    records.append({"update": 4, "env_steps": 400, "eval/success_rate": 0.5, "eval/success_ci95_low": 0.3,
                    "eval/success_ci95_high": 0.7, "eval/mean_return": 2.0})  # fmt: skip
    figure = plot_curves(records, title="t", ceiling=0.95, reference=0.89, reference_label="paper")
    success_axes, return_axes = figure.axes[:2]
    labels = success_axes.get_legend_handles_labels()[1]
    assert labels == ["train", "ceiling (0.95)", "paper (0.89)", "eval (95% CI)"]
    (errorbar,) = success_axes.containers
    low, high = (caps.get_ydata()[0] for caps in errorbar.lines[1])  # the caps sit at the interval's ends
    assert (low, high) == pytest.approx((0.3, 0.7))
    assert "eval" in return_axes.get_legend_handles_labels()[1]
    assert success_axes.get_xlabel() == "environment steps" and success_axes.get_ylabel() == "success rate"


def test_curve_refresh_is_throttled_but_always_done_on_close(tmp_path):
    curve = tmp_path / "curve.png"
    with MetricsLogger(tmp_path, tensorboard=False, plot_every_seconds=0) as logger:
        log_updates(logger, [1])
        first = curve.read_bytes()
        logger.plot_every_seconds = 3600
        log_updates(logger, [2, 3])
        assert curve.read_bytes() == first
    assert curve.read_bytes() != first


def test_a_failed_redraw_leaves_the_previous_curve_whole_and_no_temp_file(tmp_path, monkeypatch):
    with MetricsLogger(tmp_path, tensorboard=False, plot_every_seconds=0) as logger:
        log_updates(logger, [1])
        before = (tmp_path / "curve.png").read_bytes()

        def torn_savefig(self, target, **kwargs):
            Path(target).write_bytes(PNG_SIGNATURE + b"half a picture")
            raise OSError("disk full")

        monkeypatch.setattr("matplotlib.figure.Figure.savefig", torn_savefig)
        with pytest.raises(OSError, match="disk full"):
            logger.plot()
        assert (tmp_path / "curve.png").read_bytes() == before
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
        monkeypatch.undo()


# -- console ------------------------------------------------------------------------------------


def test_format_metrics_shows_the_key_numbers_compactly():
    values = {**train_values(4), "charts/invalid_rate": 0.05, "losses/clipfrac": 0.125, "losses/value_loss": 3.0}
    assert format_metrics(values) == "success 0.4  return 3.5  invalid 0.05  kl 0.04  clipfrac 0.125  SPS 1004"
    assert format_metrics({"charts/success_rate": math.nan}) == ""


def test_console_progress_prints_plain_lines_when_not_a_terminal():
    stream = io.StringIO()
    with ConsoleProgress(500, stream=stream, print_every=2) as progress:
        assert not progress.live
        for update in range(1, 6):
            values = train_values(update)
            if update == 2:
                values["eval/success_rate"] = 0.3
            progress.update(update * 100, values)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3  # updates 2 and 4, and the last one
    assert lines[0].startswith("train update 2  env steps 200/500 (40%)")
    assert "success 0.5" in lines[2] and "eval 0.3" in lines[2]  # the eval figure stays until the next
    assert "\x1b" not in stream.getvalue()  # no terminal escapes in a CI log


def test_console_progress_draws_a_bar_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    with ConsoleProgress(300, description="ppo", stream=stream) as progress:
        assert progress.live
        for update in range(1, 4):
            progress.update(update * 100, train_values(update))
    assert "ppo" in stream.getvalue()


def test_module_names_its_timing_keys():
    assert metrics.is_timing_key("charts/SPS") and metrics.is_timing_key("perf/anything")
    assert not metrics.is_timing_key("charts/success_rate")
