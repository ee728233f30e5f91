"""The ALFWorld observation image when there is no THOR frame: the text, drawn.

The paper's agent saw AI2-THOR frames. Without THOR the picture shows what the text engine
says, so the VLM code path (image + prompt) is the same as for the card games: the task on
a banner at the top, the last command, then the game's answer, wrapped to the width and set
in the largest size that fits. Drawn with Pillow's built-in font, like every game here.
"""

from __future__ import annotations

import textwrap

from PIL import Image, ImageDraw

from vlmrl.games.cards import font

SIZE = 300
MARGIN = 8
BANNER = (32, 72, 140)
PAPER = (250, 248, 240)
INK = (25, 25, 25)
COMMAND_INK = (120, 60, 20)
TEXT_SIZES = (22, 20, 18, 16, 15, 14, 13, 12, 11, 10, 9, 8)
"""Largest first; the observation gets the largest size at which all of it fits."""


def wrap(text: str, size: int, width: int) -> list[str]:
    """`text` broken into lines no wider than `width` pixels at font `size`."""
    probe = font(size)
    average = max(1.0, probe.getlength("abcdefghijklmnopqrstuvwxyz 0123456789") / 37)
    columns = max(8, int(width / average))
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        wrapped = textwrap.wrap(paragraph, columns) or [""]
        for line in wrapped:
            while probe.getlength(line) > width and len(line) > 1:
                cut = line.rfind(" ", 0, len(line) - 1)
                cut = cut if cut > 0 else len(line) - 1
                lines.append(line[:cut])
                line = line[cut:].lstrip()
            lines.append(line)
    return lines


def _block(draw: ImageDraw.ImageDraw, top: int, lines: list[str], size: int, fill: tuple[int, int, int]) -> int:
    step = size + 3
    for i, line in enumerate(lines):
        draw.text((MARGIN, top + i * step), line, font=font(size), fill=fill)
    return top + len(lines) * step


def draw_observation(task: str, observation: str, last_command: str | None = None) -> Image.Image:
    """The 300x300 picture of one step: task banner, last command, the game's text."""
    image = Image.new("RGB", (SIZE, SIZE), PAPER)
    draw = ImageDraw.Draw(image)
    width = SIZE - 2 * MARGIN
    task_lines = wrap(f"Task: {task}" if task else "Task: (none)", 14, width)[:3]
    banner_bottom = MARGIN + len(task_lines) * 17 + 4
    draw.rectangle((0, 0, SIZE, banner_bottom + 2), fill=BANNER)
    _block(draw, MARGIN, task_lines, 14, (255, 255, 255))
    top = banner_bottom + 8
    if last_command:
        command_lines = wrap(f"> {last_command}", 13, width)[:2]
        top = _block(draw, top, command_lines, 13, COMMAND_INK) + 4
    room = SIZE - MARGIN - top
    for size in TEXT_SIZES:
        lines = wrap(observation, size, width)
        if len(lines) * (size + 3) <= room:
            break
    else:
        keep = max(1, room // (size + 3))
        lines = lines[: keep - 1] + ["..."] if keep > 1 else ["..."]
    _block(draw, top, lines, size, INK)
    return image
