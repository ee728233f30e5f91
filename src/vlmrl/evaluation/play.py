"""An episode as an animated GIF: each frame the observation with the answer and reward beside it."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from vlmrl.games.cards import font

FRAME_W, FRAME_H = 760, 340
PANEL_X = 340
TEXT_SIZE = 14
WRAP = 52
MAX_LINES = 17


def render_frame(step: int, frame: dict[str, Any], total_return: float) -> Image.Image:
    canvas = Image.new("RGB", (FRAME_W, FRAME_H), (245, 245, 245))
    canvas.paste(Image.fromarray(frame["image"]), (20, 20))
    draw = ImageDraw.Draw(canvas)
    if frame["answer"] is None:
        outcome = "SUCCESS" if frame["success"] else "FAILURE"
        color = (20, 130, 40) if frame["success"] else (190, 30, 30)
        draw.text((PANEL_X, 30), f"Episode over after {step} steps", font=font(20), fill=(20, 20, 20))
        draw.text((PANEL_X, 70), outcome, font=font(36), fill=color)
        draw.text((PANEL_X, 125), f"Return: {total_return:+g}", font=font(20), fill=(20, 20, 20))
        return canvas
    draw.text((PANEL_X, 20), f"Step {step + 1}", font=font(20), fill=(20, 20, 20))
    lines = textwrap.wrap(frame["answer"], WRAP) or [""]
    if len(lines) > MAX_LINES:
        lines = lines[: MAX_LINES - 1] + ["..."]
    draw.multiline_text((PANEL_X, 52), "\n".join(lines), font=font(TEXT_SIZE), fill=(40, 40, 40), spacing=3)
    reward = f"Reward: {frame['reward']:+g}" + ("   (invalid answer)" if frame["invalid"] else "")
    draw.text((PANEL_X, FRAME_H - 34), reward, font=font(18), fill=(20, 20, 120))
    return canvas


def write_gif(frames: list[dict[str, Any]], path: str | Path, seconds_per_frame: float = 1.5) -> Path:
    """Write the frames of a recorded episode (see `evaluate.play_episode`) as a looping GIF."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images, total = [], 0.0
    for step, frame in enumerate(frames):
        images.append(render_frame(step, frame, total))
        total += float(frame["reward"] or 0.0)
    durations = [int(seconds_per_frame * 1000)] * (len(images) - 1) + [int(3 * seconds_per_frame * 1000)]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return path
