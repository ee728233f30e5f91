"""`vlmrl bench ablation`: one key varied over PPO runs from one warm-up, each judged on the same deals."""

from __future__ import annotations

import json

import pytest

from vlmrl.cli import ablation_table, main
from vlmrl.infra.errors import UsageError
from vlmrl.infra.seeds import EVAL_SEED_BASE, VALIDATION_SEED_BASE
from vlmrl.recipes.ablation import ablation, parse_vary
from vlmrl.recipes.config import load_config

RL = [
    "rl.num_envs=2",
    "rl.steps_per_update=4",
    "rl.total_steps=4",
    "rl.max_new_tokens=8",
    "rl.minibatch_size=2",
    "rl.eval_every=0",
    "rl.tensorboard=false",
]
SFT = ["sft.episodes=4", "sft.epochs=1", "sft.batch_size=4", "sft.eval_examples=2", "sft.max_new_tokens=8"]


def test_each_value_trains_from_the_same_start_and_is_judged_on_the_validation_deals(tiny_llava, tmp_path, capsys):
    out = tmp_path / "ablation"
    argv = ["bench", "ablation", "--env", "numberline", "--vary", "cot_lambda=0,1", "--init", str(tiny_llava)]
    assert main([*argv, "--episodes", "2", "--seeds", "validation", "--out", str(out), "--json", *RL]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["vary"] == "cot_lambda" and list(summary["warmups"]) == ["init"]
    start = summary["warmups"]["init"]  # the shared start, judged on the same deals as the runs
    assert start["episodes"] == 2 and start["seconds"] == 0 and 0 <= start["success_rate"] <= 1
    assert summary["eval_seeds"] == [VALIDATION_SEED_BASE, VALIDATION_SEED_BASE + 1]
    assert [row["value"] for row in summary["runs"]] == ["0", "1"]
    for row, value in zip(summary["runs"], (0.0, 1.0), strict=True):
        config = load_config(out / f"rl-{row['value']}" / "config.yaml")
        assert config.cot_lambda == value and config.init == str(tiny_llava) and config.eval_seeds == "validation"
        assert row["episodes"] == 2 and 0 <= row["success_rate"] <= 1 and row["env_steps"] == 4
    assert json.loads((out / "summary.json").read_text()) == summary
    assert "cot_lambda=1" in str(ablation_table(summary).columns[0]._cells)


def test_a_key_that_changes_the_warm_up_gets_one_warm_up_per_value(tiny_llava, tmp_path):
    sft = [f"model={tiny_llava}", *(o.partition(".")[2] for o in SFT)]
    summary = ablation(
        "numberline",
        "cot=true,false",
        tmp_path / "a",
        episodes=2,
        sft_overrides=sft,
        train_overrides=[o.partition(".")[2] for o in RL],
        log=lambda line: None,
    )
    assert list(summary["warmups"]) == ["sft-true", "sft-false"]
    assert [row["warmup"] for row in summary["runs"]] == ["sft-true", "sft-false"]
    assert summary["eval_seeds"] == [EVAL_SEED_BASE, EVAL_SEED_BASE + 1]
    assert (tmp_path / "a" / "sft-false" / "model" / "config.json").is_file()
    assert load_config(tmp_path / "a" / "rl-false" / "config.yaml").cot is False


@pytest.mark.parametrize(
    ("vary", "message"),
    [
        ("cot_lambda", "must read KEY=VALUE,VALUE,..."),
        ("speed=1,2", "'speed' is not a key of `vlmrl train`"),
        ("out=a,b", "--vary out cannot vary"),
        ("lr=1e-4,1e-4", "names a value twice"),
    ],
)
def test_a_wrong_vary_is_one_line(vary, message):
    with pytest.raises(UsageError) as error:
        parse_vary(vary)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_warm_up_key_cannot_share_a_given_warm_up(tmp_path, capsys):
    argv = ["bench", "ablation", "--env", "numberline", "--vary", "cot=true,false", "--init", str(tmp_path)]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 2
    assert "--vary cot changes the warm-up, so it needs its own SFT runs: drop --init" in capsys.readouterr().err
