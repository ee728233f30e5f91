"""`vlmrl bench rollout` and `vlmrl bench update`: what they count, at test size, and the 7B shapes they build."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from vlmrl.cli import main
from vlmrl.tiny.shapes import count_shaped_parameters, shaped_parts, shaped_policy

PUBLISHED_7B = {"llava": 7.06e9, "llava-next": 7.57e9, "qwen2-vl": 8.29e9, "qwen2.5-vl": 8.29e9}
"""Parameter counts on the checkpoints' model cards: LLaVA-1.5-7B, LLaVA-1.6-Mistral-7B, Qwen2(.5)-VL-7B-Instruct."""


def run_json(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    assert code == 0, err
    return json.loads(out)


def test_bench_rollout_counts_every_env_step_and_token_and_divides_by_the_one_environment_loop(capsys):
    result = run_json(
        capsys, "bench", "rollout", "--family", "llava", "--shape", "test", "--num-envs", "1,3",
        "--steps", "2", "--one-env-steps", "3", "--max-new-tokens", "8", "--json",
    )  # fmt: skip
    one, rows = result["one_env"], result["rows"]
    assert result["bench"] == "rollout" and result["env"] == "numberline" and result["max_new_tokens"] == 8
    assert one["num_envs"] == 1 and one["env_steps"] == 3
    assert [row["num_envs"] for row in rows] == [1, 3] and [row["env_steps"] for row in rows] == [2, 6]
    for row in [one, *rows]:
        assert 0 < row["generated_tokens"] <= row["env_steps"] * 8  # answers end at their limit or earlier
        assert row["env_steps_per_second"] == pytest.approx(row["env_steps"] / row["seconds"])
        assert row["tokens_per_second"] == pytest.approx(row["generated_tokens"] / row["seconds"])
        assert 0 < row["generation_seconds"] <= row["seconds"]
    for row in rows:
        assert row["speedup"] == pytest.approx(row["env_steps_per_second"] / one["env_steps_per_second"])
    assert result["cpu_peak_rss_bytes"] > 0 and result["cuda_max_allocated_bytes"] is None
    assert result["memory_bandwidth"] is None and "roofline_fraction" not in one
    assert result["attention"] == "sdpa"  # torch's fused attention, not the eager fallback


def test_bench_rollout_counts_the_bytes_a_decode_step_reads_against_the_given_bandwidth(capsys):
    """Per decode step: the language model's weights once, and each answer's KV cache (2 x layers x KV
    heads x head size x 4 bytes per token of context in float32, the prompt and half the answer)."""
    result = run_json(
        capsys, "bench", "rollout", "--family", "llava", "--shape", "test", "--num-envs", "2", "--steps", "1",
        "--one-env-steps", "1", "--max-new-tokens", "6", "--memory-bandwidth", "0.001", "--kv-cache", "static",
        "--json",
    )  # fmt: skip
    from vlmrl.tiny.build import DIMS

    dims = DIMS["test"]
    per_token = 2 * dims.text_layers * dims.text_kv_heads * (dims.text_hidden // dims.text_heads) * 4
    policy = shaped_policy("llava", "test", device="cpu")
    weights = sum(
        p.numel() * 4 for n, p in policy.model.named_parameters() if "vision" not in n and "projector" not in n
    )
    assert result["kv_cache"] == "static" and result["memory_bandwidth"] == pytest.approx(1e9)
    for row in [result["one_env"], *result["rows"]]:
        context = row["mean_prompt_tokens"] + row["mean_answer_tokens"] / 2
        assert row["bytes_per_decode_step"] == pytest.approx(weights + row["num_envs"] * context * per_token)
        assert row["decode_bytes_per_second"] == pytest.approx(
            row["bytes_per_decode_step"] * row["decode_steps_per_second"]
        )
        assert row["roofline_fraction"] == pytest.approx(row["decode_bytes_per_second"] / 1e9)


def test_bench_rollout_steps_the_games_in_workers_and_times_them_apart(capsys):
    result = run_json(
        capsys, "bench", "rollout", "--family", "llava", "--shape", "test", "--num-envs", "3", "--steps", "2",
        "--one-env-steps", "1", "--max-new-tokens", "6", "--env-workers", "2", "--invalid-action", "random", "--json",
    )  # fmt: skip
    assert (result["env_workers"], result["invalid_action"]) == (2, "random")
    for row in [result["one_env"], *result["rows"]]:
        assert 0 < row["env_seconds"] < row["seconds"] and row["generation_seconds"] < row["seconds"]


def test_bench_update_reports_samples_per_second_of_one_optimizer_step_by_default(capsys):
    result = run_json(
        capsys, "bench", "update", "--family", "qwen2-vl", "--shape", "test", "--repeats", "2",
        "minibatch_size=2", "grad_accum=3", "max_new_tokens=8", "--json",
    )  # fmt: skip
    assert result["bench"] == "update" and result["samples_per_update"] == 6
    assert result["optimizer_steps_per_update"] == 1
    assert (result["minibatch_size"], result["grad_accum"], result["ppo_epochs"]) == (2, 3, 1)
    assert len(result["seconds"]) == 2 and result["seconds_per_update"] == pytest.approx(np.mean(result["seconds"]))
    assert result["samples_per_second"] == pytest.approx(6 / result["seconds_per_update"])
    assert 0 < result["trainable_parameters"] < result["parameters"]  # the vision tower stays frozen
    assert result["cpu_peak_rss_bytes"] > 0 and result["dtype"] == "float32"


def test_bench_update_takes_lora_and_more_epochs_from_its_overrides(capsys):
    result = run_json(
        capsys, "bench", "update", "--family", "llava", "--shape", "test", "--repeats", "1",
        "minibatch_size=2", "grad_accum=1", "ppo_epochs=2", "lora=true", "lora_rank=4", "max_new_tokens=8", "--json",
    )  # fmt: skip
    assert result["lora"] is True and result["samples_per_update"] == 4 and result["optimizer_steps_per_update"] == 2
    assert result["trainable_parameters"] < result["parameters"] / 5  # adapters and the value head only


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--model", "somewhere", "--family", "llava", "--shape", "test"], "give --model FOLDER, or --family with"),
        (["--shape", "7b"], "give --model FOLDER, or --family with --shape"),
        (["--family", "gpt", "--shape", "test"], "unknown model family 'gpt'; supported families: llava"),
        (["--family", "llava", "--shape", "13b"], "invalid choice: '13b'"),
        (["--num-envs", "8,0"], "expected a positive integer, got '0'"),
    ],
)
def test_bad_model_sources_are_one_error_line(capsys, argv, message):
    code = main(["bench", "rollout", *argv])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


def test_bench_update_defaults_to_one_optimizer_step_of_the_presets_mini_batch(capsys):
    """The NumberLine preset's mini-batch is 8 x 2: one update of 16 samples."""
    result = run_json(
        capsys, "bench", "update", "--family", "llava", "--shape", "test", "--repeats", "1", "max_new_tokens=4",
        "--json",
    )  # fmt: skip
    assert (result["minibatch_size"], result["grad_accum"], result["samples_per_update"]) == (8, 2, 16)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["update", "minibatch_size=abc"], "minibatch_size"),
        (["update", "--config", "paper/chess"], "config 'paper/chess' is neither a file nor a shipped preset"),
        (["rollout", "--memory-bandwidth", "-1"], "--memory-bandwidth must be a positive number of TB/s"),
    ],
)
def test_bad_bench_settings_are_one_error_line(capsys, argv, message):
    code = main(["bench", *argv, "--family", "llava", "--shape", "test"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and message in err


@pytest.mark.parametrize("family", list(PUBLISHED_7B))
def test_the_7b_shape_has_the_published_checkpoints_parameter_count(family):
    assert count_shaped_parameters(family, "7b") == pytest.approx(PUBLISHED_7B[family], rel=0.005)


@pytest.mark.parametrize(("family", "image_tokens"), [("llava", 576), ("qwen2-vl", 121), ("qwen2.5-vl", 121)])
def test_the_7b_processor_sees_a_game_image_at_the_checkpoints_resolution(family, image_tokens):
    """300x300 game images: CLIP-336 sees 24x24 patches; Qwen's processor rounds the image to 308x308,
    22x22 patches merged 2x2."""
    config, processor = shaped_parts(family, "7b")
    chat = processor.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "go"}]}],
        add_generation_prompt=True,
        tokenize=False,
    )
    inputs = processor(images=[Image.new("RGB", (300, 300))], text=[chat], return_tensors="pt")
    image_id = config.image_token_id if hasattr(config, "image_token_id") else config.image_token_index
    assert int((inputs["input_ids"] == image_id).sum()) == image_tokens


def test_a_shaped_policy_generates_like_a_loaded_one():
    policy = shaped_policy("llava-next", "test", device="cpu")
    images = [np.zeros((300, 300, 3), np.uint8)] * 2
    samples = policy.generate(images, ["go", "stop"], temperature=1.0, max_new_tokens=5)
    assert len(samples) == 2 and all(len(s.response_ids) <= 5 for s in samples)
    assert all(np.isfinite(s.value) and s.logprobs.shape == s.response_ids.shape for s in samples)
