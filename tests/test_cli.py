"""The `vlmrl` command as a user meets it: numbers, files, and one-line errors."""

import json

import pytest
from PIL import Image

from vlmrl.cli import main
from vlmrl.evaluation.evaluate import wilson_interval

EVAL_KEYS = {
    "env",
    "agent",
    "episodes",
    "success_rate",
    "success_ci95",
    "mean_return",
    "mean_length",
    "invalid_rate",
    "ceiling",
}


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_eval_json_has_the_documented_keys_and_sane_numbers(capsys):
    code, out, _ = run(
        capsys, "eval", "--env", "numberline", "--agent", "expert", "--episodes", "20", "--seed", "5", "--json"
    )
    result = json.loads(out)
    assert code == 0 and set(result) == EVAL_KEYS
    assert result["success_rate"] == 1.0 and result["ceiling"] == 1.0 and result["invalid_rate"] == 0.0
    assert result["success_ci95"][0] < 1.0 <= result["success_ci95"][1] + 1e-12
    assert 1 <= result["mean_length"] <= 5


def test_eval_is_reproducible_for_a_seed(capsys):
    first = run(capsys, "eval", "--env", "blackjack", "--agent", "random", "--episodes", "30", "--seed", "9", "--json")[
        1
    ]
    second = run(
        capsys, "eval", "--env", "blackjack", "--agent", "random", "--episodes", "30", "--seed", "9", "--json"
    )[1]
    assert first == second


def test_eval_of_several_games_prints_one_json_object_per_line(capsys):
    code, out, _ = run(capsys, "eval", "--env", "numberline,blackjack", "--agent", "all", "--episodes", "3", "--json")
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["env"], r["agent"]) for r in rows] == [
        ("numberline", "expert"),
        ("numberline", "random"),
        ("blackjack", "expert"),
        ("blackjack", "random"),
    ]


def test_always_stand_is_the_baseline_blackjack_policies_must_beat(capsys):
    code, out, _ = run(
        capsys, "eval", "--env", "blackjack", "--agent", "always:stand,expert", "--episodes", "400", "--json"
    )
    stand, expert = (json.loads(line) for line in out.splitlines())
    assert code == 0 and stand["agent"] == "always:stand" and stand["mean_length"] == 1.0
    assert stand["invalid_rate"] == 0.0 and 0.33 < stand["success_rate"] < 0.47  # about 40% of hands
    assert expert["mean_length"] > 1.2 and expert["success_rate"] > stand["success_rate"]


def test_eval_prints_a_table_with_the_ceiling(capsys):
    code, out, _ = run(capsys, "eval", "--env", "points24", "--episodes", "5")
    assert code == 0 and "ceiling" in out and "73.1%" in out


@pytest.mark.parametrize(
    "argv,message",
    [
        (["eval", "--env", "chess"], "unknown game 'chess'; known games: numberline, ezpoints, points24, blackjack"),
        (["play", "--env", "go"], "unknown game 'go'"),
        (
            ["eval", "--env", "numberline", "--agent", "genius"],
            "unknown agent 'genius'; an agent is one of expert, random, always:ACTION or a run folder of vlmrl "
            "train or sft",
        ),
        (
            ["eval", "--env", "blackjack", "--agent", "always:fold"],
            "blackjack has no action 'fold'; its actions: stand, hit",
        ),
        (["eval", "--env", "numberline", "--episodes", "0"], "expected a positive integer"),
        (["bench", "env", "--env", "poker"], "unknown game 'poker'"),
        (
            ["eval", "--env", "numberline", "--split", "valid_seen"],
            "does not suit numberline: NumberLineEnv.__init__() got an unexpected keyword argument 'split'\n",
        ),
        (["eval", "--env", "numberline", "--env-kwargs", "[1, 2]"], "--env-kwargs must be a YAML mapping"),
        (["play", "--env", "numberline", "--env-kwargs", "{split:"], "--env-kwargs '{split:' is not YAML"),
        (["fly"], "invalid choice"),
    ],
)
def test_bad_input_is_one_clear_error_line(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err and err.startswith("vlmrl: error:")


def test_play_writes_an_animated_gif_of_the_episode(capsys, tmp_path):
    path = tmp_path / "sub" / "episode.gif"
    code, out, _ = run(capsys, "play", "--env", "ezpoints", "--agent", "expert", "--seed", "2", "--out", str(path))
    assert code == 0 and "success" in out
    with Image.open(path) as gif:
        assert gif.n_frames == 5  # four answers ("a", op, "b", "=") and the final outcome
        assert gif.size[0] > 600 and gif.size[1] >= 300


def test_play_to_an_unwritable_place_is_one_error_line(capsys, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run(capsys, "play", "--env", "numberline", "--out", str(blocker / "episode.gif"))
    assert code == 1 and len(err.strip().splitlines()) == 1 and "error" in err


def test_bench_env_json_reports_every_game(capsys):
    code, out, _ = run(capsys, "bench", "env", "--steps", "50", "--json")
    rows = json.loads(out)["results"]
    assert code == 0 and [r["env"] for r in rows] == ["numberline", "ezpoints", "points24", "blackjack"]
    assert all(r["steps_per_second"] > 0 for r in rows)


def test_wilson_interval_is_exact_at_the_edges_and_contains_the_rate():
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0
    low, high = wilson_interval(30, 100)
    assert low < 0.3 < high and high - low == pytest.approx(0.18, abs=0.01)


def test_init_model_writes_a_folder_every_loader_reads(capsys, tmp_path):
    from transformers import AutoModelForImageTextToText

    from vlmrl.policy import load_policy

    code, out, _ = run(
        capsys, "init-model", "--family", "qwen2-vl", "--size", "test", "--out", str(tmp_path / "m"), "--json"
    )
    summary = json.loads(out)
    assert code == 0 and summary["family"] == "qwen2-vl" and 100_000 < summary["parameters"] < 2_000_000
    model = AutoModelForImageTextToText.from_pretrained(tmp_path / "m", local_files_only=True)
    assert sum(p.numel() for p in model.parameters()) == summary["parameters"]
    assert load_policy(tmp_path / "m").family == "qwen2-vl"


@pytest.mark.parametrize(
    "argv,message",
    [
        (["init-model", "--family", "gpt", "--out", "x"], "unknown family 'gpt'; known families: llava, llava-next"),
        (
            ["init-model", "--family", "llava", "--size", "huge", "--out", "x"],
            "unknown size 'huge'; known sizes: test, demo",
        ),
    ],
)
def test_init_model_bad_choices_are_one_error_line(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_init_model_never_overwrites_a_folder_it_did_not_build(capsys, tmp_path):
    (tmp_path / "precious.txt").write_text("keep me")
    code, _, err = run(capsys, "init-model", "--family", "llava", "--out", str(tmp_path))
    assert code == 2 and "refusing to overwrite" in err and (tmp_path / "precious.txt").read_text() == "keep me"


@pytest.mark.parametrize("command", ["train", "sft"])
def test_help_lists_every_key_with_its_type_default_and_help(capsys, command):
    import dataclasses

    from vlmrl.recipes.config import SFTConfig, TrainConfig

    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    assert exit_.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # help text wraps; compare words
    kind = TrainConfig if command == "train" else SFTConfig
    for item in dataclasses.fields(kind):
        assert f" {item.name} (" in out, item.name
        assert " ".join(item.metadata["help"].split()) in out, item.name
    assert "lr (float, default 1.0e-05)" in out if command == "train" else "lr (float, default 0.0005)" in out
    assert "lora (bool, default true)" in out if command == "train" else "lora (bool, default false)" in out
    assert "model (str or null, default null)" in out


def test_print_config_prints_the_resolved_config_and_runs_nothing(capsys, tmp_path, monkeypatch):
    import yaml

    from vlmrl.infra.typed_config import config_yaml
    from vlmrl.recipes.config import load_config, load_sft_config

    monkeypatch.chdir(tmp_path)
    code, out, _ = run(capsys, "train", "--env", "ezpoints", "--print-config", "lr=3e-4", "num_envs=2")
    printed = yaml.safe_load(out)
    assert code == 0 and printed["lr"] == 3e-4 and printed["num_envs"] == 2 and printed["env"] == "ezpoints"
    assert out == config_yaml(load_config(env="ezpoints", overrides=["lr=3e-4", "num_envs=2"]))
    saved = tmp_path / "printed.yaml"
    saved.write_text(out)
    assert load_config(saved) == load_config(env="ezpoints", overrides=["lr=3e-4", "num_envs=2"])
    assert list(tmp_path.iterdir()) == [saved]  # no run folder was made

    code, out, _ = run(capsys, "sft", "--env", "blackjack", "--print-config", "--episodes", "40")
    assert code == 0 and out == config_yaml(load_sft_config(env="blackjack", overrides=["episodes=40"]))

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text(config_yaml(load_config(env="numberline", overrides=["seed=7"])))
    code, out, _ = run(capsys, "train", "--resume", str(run_dir), "--print-config")
    assert code == 0 and yaml.safe_load(out)["seed"] == 7 and yaml.safe_load(out)["out"] == str(run_dir)

    code, _, err = run(capsys, "train", "--env", "ezpoints", "--print-config", "learning_rate=1")
    assert code == 2 and err.startswith("vlmrl: error: unknown key 'learning_rate' in the command line")
