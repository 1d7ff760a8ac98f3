"""Training curves as a PNG: mean training loss and validation PSNR per epoch.

Uses matplotlib's object API with the Agg canvas directly, so it never touches the global
backend (works headless and inside notebooks alike).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from utils.atomic import atomic_path


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    """(epochs, values) of the rows that have a finite `key`."""
    points = [(int(row["epoch"]), float(row[key])) for row in history
              if row.get(key) is not None and math.isfinite(float(row[key]))]
    return [p[0] for p in points], [p[1] for p in points]


def plot_training_curves(history: Sequence[dict[str, Any]], path: str | os.PathLike) -> None:
    """Write `path` (PNG) with two panels: 'loss' and 'val_psnr' of each history row against 'epoch'.

    Rows are dicts with at least 'epoch'; missing or non-finite values are left out (e.g. no
    validation set). The file is written to a temporary name first, then renamed, so a viewer
    never sees half a PNG.
    """
    figure = Figure(figsize=(9, 3.6), dpi=100)
    FigureCanvasAgg(figure)
    panels = (("loss", "training loss", "C0"),
              ("val_psnr", "validation PSNR (dB)", "C1"))
    for index, (key, title, color) in enumerate(panels, start=1):
        axis = figure.add_subplot(1, 2, index)
        epochs, values = _series(history, key)
        if epochs:
            axis.plot(epochs, values, marker="o", color=color, label="mean" if index == 2 else None)
        # Per-part validation scores (the raw recipe's per ISO: 'val_psnr_ISO1600', ...) as thin lines.
        parts = sorted({k for row in history for k in row if k.startswith(key + "_")}, key=lambda k: (len(k), k)) \
            if index == 2 else []
        for part in parts:
            axis.plot(*_series(history, part), linewidth=0.8, alpha=0.7, label=part.removeprefix(key + "_"))
        if parts:
            axis.legend(fontsize=7)
        if not epochs:
            axis.text(0.5, 0.5, "no data", ha="center", va="center", transform=axis.transAxes)
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(True, alpha=0.3)
    figure.tight_layout()
    with atomic_path(path, "plot") as tmp:
        figure.savefig(tmp, format="png")
