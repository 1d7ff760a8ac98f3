"""Training curves PNG: drawn headless, skips missing values, written atomically."""
from __future__ import annotations

import imageio.v3 as iio
import numpy as np

from utils.plots import plot_training_curves


def test_curves_png_has_both_panels_and_reflects_the_data(tmp_path):
    history = [{"epoch": 1, "loss": 2.0, "val_psnr": None},
               {"epoch": 2, "loss": 1.0, "val_psnr": 25.0},
               {"epoch": 3, "loss": float("nan"), "val_psnr": 26.0}]
    plot_training_curves(history, tmp_path / "a.png")
    plot_training_curves(history[:2], tmp_path / "b.png")
    a, b = iio.imread(tmp_path / "a.png"), iio.imread(tmp_path / "b.png")
    assert a.shape[:2] == (360, 900)
    half = a.shape[1] // 2
    assert not np.array_equal(a[:, half:], b[:, half:])  # the third PSNR point is drawn
    assert (a < 128).any() and (a > 250).any()  # lines and labels on a white figure
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "b.png"]


def test_empty_history_still_writes_a_figure(tmp_path):
    plot_training_curves([], tmp_path / "c.png")
    assert iio.imread(tmp_path / "c.png").shape[:2] == (360, 900)
