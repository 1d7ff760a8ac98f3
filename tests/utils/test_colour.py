"""Colourfulness and chroma error: what the quality benchmark and the colour tests measure."""
import numpy as np

from datasets.builtin import builtin_split
from utils.colour import chroma_error, colourfulness


def _bunny() -> np.ndarray:
    _, held_out = builtin_split("bunny")
    return held_out[:2, :96, :128].astype(np.float32) / 255


def test_grey_has_no_colour_and_the_colourful_clip_has_much():
    grey = np.repeat(np.linspace(0, 1, 64 * 80, dtype=np.float32).reshape(1, 64, 80, 1), 3, axis=-1)
    assert colourfulness(grey) < 0.01
    assert colourfulness(_bunny()) > 10


def test_a_hue_shift_keeps_colourfulness_but_not_the_chroma():
    clean = _bunny()
    swapped = clean[..., ::-1]  # red <-> blue: a hue shift of the same saturation
    assert abs(colourfulness(swapped) - colourfulness(clean)) < 0.35 * colourfulness(clean)
    assert chroma_error(swapped, clean) > 10
    noisy = clean + np.random.default_rng(0).normal(0, 25 / 255, clean.shape).astype(np.float32)
    assert chroma_error(noisy, clean) < 3  # white noise averages out in the local means
    assert chroma_error(clean, clean) == 0
