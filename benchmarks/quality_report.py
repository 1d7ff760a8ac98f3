"""Table, JSON and bar chart of the quality benchmark's rows.

A row is a dict: clip, region, sigma (0-255 scale), method, psnr, ssim, seconds (min / median /
max), frames, size. The table and the chart group rows by (clip, region), methods down, sigmas
across.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)


def _groups(rows: list[dict]) -> dict[tuple[str, str], list[dict]]:
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["clip"], row["region"]), []).append(row)
    return groups


def _ordered(values: Iterable) -> list:
    """Distinct values in first-seen order."""
    return list(dict.fromkeys(values))


def format_table(rows: list[dict]) -> str:
    """Plain-text tables, one per (clip, region): PSNR/SSIM and median seconds per method and sigma."""
    lines = []
    for (clip, region), group in _groups(rows).items():
        sigmas = sorted({row["sigma"] for row in group})
        methods = _ordered(row["method"] for row in group)
        cell = {(row["method"], row["sigma"]): row for row in group}
        first = group[0]
        lines.append(f"{clip} ({region}: {first['frames']} frames {first['size'][0]}x{first['size'][1]}), "
                     "PSNR dB / SSIM / chroma error (0-255) / seconds")
        lines.append(f"{'method':<40}" + "".join(f"| sigma {s:<27g}" for s in sigmas))
        for method in methods:
            cells = []
            for sigma in sigmas:
                row = cell.get((method, sigma))
                seconds = f"{row['seconds']['median']:6.1f}" if row and row["seconds"] else "     -"
                colour = f"{row['chroma_error']:5.2f}" if row and "chroma_error" in row else "    -"
                cells.append(f"| {row['psnr']:6.2f} / {row['ssim']:.4f} / {colour} / {seconds} " if row
                             else f"| {'-':<33}")
            lines.append(f"{method:<40}" + "".join(cells))
        lines.append("")
    return "\n".join(lines)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Indented JSON (small, diff-friendly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=1, default=str) + "\n")


def plot_bars(rows: list[dict], path: Path, title: str) -> None:
    """Grouped PSNR bars (one group per sigma, one bar per method), one panel per (clip, region)."""
    groups = _groups(rows)
    all_methods = _ordered(row["method"] for row in rows)
    colours = {method: plt.get_cmap("tab10")(i % 10) for i, method in enumerate(all_methods)}
    figure, axes = plt.subplots(1, len(groups), figsize=(5.0 * len(groups), 4.6), squeeze=False)
    for axis, ((clip, region), group) in zip(axes[0], groups.items()):
        sigmas = sorted({row["sigma"] for row in group})
        methods = _ordered(row["method"] for row in group)
        psnr = {(row["method"], row["sigma"]): row["psnr"] for row in group}
        width = 0.8 / len(methods)
        for m, method in enumerate(methods):
            xs = [s + (m - (len(methods) - 1) / 2) * width for s in range(len(sigmas))]
            axis.bar(xs, [psnr.get((method, sigma), 0.0) for sigma in sigmas], width, color=colours[method])
        axis.set_xticks(range(len(sigmas)), [f"sigma {s:g}" for s in sigmas])
        axis.set_ylabel("PSNR (dB)")
        low = min(row["psnr"] for row in group)
        axis.set_ylim(max(0.0, low - 2.0), max(row["psnr"] for row in group) + 1.0)
        axis.set_title(f"{clip} ({region})")
        axis.grid(axis="y", alpha=0.3)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[method]) for method in all_methods]
    figure.legend(handles, all_methods, loc="lower center", ncol=min(4, len(all_methods)), fontsize=8)
    figure.suptitle(title, fontsize=9)
    figure.tight_layout(rect=(0, 0.1, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    plt.close(figure)
