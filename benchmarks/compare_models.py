"""Does a candidate default model replace the shipped one? Two quality-benchmark runs side by side.

    python -m benchmarks.compare_models benchmarks/results/successor_base benchmarks/results/successor \
        --out benchmarks/results/successor/compare.json

Pairs the rows of one method (default: the default model as `denoise.py` runs it) by clip, region
and sigma, and prints PSNR, chroma error and seconds per frame of both with the differences. The
rule for shipping a successor (issue "real footage"): higher PSNR in every pair, and no more than
`--max_slowdown` times the seconds per frame (median over the pairs, fine-tuning included, both runs
measured under the same conditions).
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from utils.errors import UserArgumentParser, UserError, run_cli
from utils.json_text import strict_json

DEFAULT_METHOD = "as denoise.py runs it ("


def method_rows(run_dir: Path, method: str) -> dict[tuple[str, str, float], dict]:
    """(clip, region, sigma) -> the row of the method whose name contains `method`, in `run_dir`."""
    path = run_dir / "quality.json"
    if not path.is_file():
        raise UserError(f"'{run_dir}' holds no quality.json (a `python -m benchmarks.quality --out` folder)")
    rows = [r for r in json.loads(path.read_text())["rows"] if method in r["method"]]
    if not rows:
        raise UserError(f"'{path}' has no row whose method contains {method!r}")
    return {(r["clip"], r["region"], r["sigma"]): r for r in rows}


def seconds_per_frame(row: dict) -> float:
    return row["seconds"]["median"] / row["frames"]


def measures(row: dict) -> dict[str, Any]:
    return {"psnr": row["psnr"], "chroma_error": row.get("chroma_error"), "seconds_per_frame": seconds_per_frame(row)}


def pair(key: tuple[str, str, float], base: dict, candidate: dict) -> dict[str, Any]:
    """One case: both runs' measures, the PSNR gain and the ratio of seconds per frame."""
    clip, region, sigma = key
    return {"clip": clip, "region": region, "sigma": sigma, "base": measures(base),
            "candidate": measures(candidate), "psnr_gain": candidate["psnr"] - base["psnr"],
            "time_ratio": seconds_per_frame(candidate) / seconds_per_frame(base)}


def compare(base: dict, candidate: dict, max_slowdown: float) -> dict[str, Any]:
    """Per-pair differences and the verdict (see the module docstring)."""
    keys = [k for k in base if k in candidate]
    if not keys:
        raise UserError("the two runs share no clip, region and sigma")
    pairs = [pair(key, base[key], candidate[key]) for key in keys]
    better = sum(p["psnr_gain"] > 0 for p in pairs)
    time_ratio = statistics.median(p["time_ratio"] for p in pairs)
    ships = better == len(pairs) and time_ratio <= max_slowdown
    return {"pairs": pairs, "better_in": better, "cases": len(pairs), "median_time_ratio": time_ratio,
            "max_slowdown": max_slowdown, "ships": ships}


def format_comparison(result: dict[str, Any]) -> str:
    lines = [f"{'clip':<10}{'sigma':>6}  {'base dB / chroma / s':>24}  {'candidate dB / chroma / s':>26}"
             f"  {'gain dB':>8}  {'time x':>7}"]
    for p in result["pairs"]:
        cells = [f"{p[side]['psnr']:.2f} / {p[side]['chroma_error']:.2f} / {p[side]['seconds_per_frame']:.1f}"
                 for side in ("base", "candidate")]
        lines.append(f"{p['clip']:<10}{p['sigma']:>6g}  {cells[0]:>24}  {cells[1]:>26}"
                     f"  {p['psnr_gain']:>+8.2f}  {p['time_ratio']:>7.2f}")
    verdict = "ships" if result["ships"] else "does not ship"
    lines.append(f"candidate better in {result['better_in']} of {result['cases']} cases; median time per frame "
                 f"x{result['median_time_ratio']:.2f} (limit x{result['max_slowdown']:g}): {verdict}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = UserArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base", type=Path, help="quality-benchmark folder of the shipped model")
    p.add_argument("candidate", type=Path, help="quality-benchmark folder of the candidate")
    p.add_argument("--method", default=DEFAULT_METHOD, help="words of the method name to compare")
    p.add_argument("--max_slowdown", type=float, default=1.5, help="allowed ratio of seconds per frame")
    p.add_argument("--out", type=Path, help="also write the comparison as JSON here")
    args: argparse.Namespace = p.parse_args(argv)
    result = compare(method_rows(args.base, args.method), method_rows(args.candidate, args.method),
                     args.max_slowdown)
    print(format_comparison(result))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(strict_json({"base": str(args.base), "candidate": str(args.candidate), **result}))
    return 0


if __name__ == "__main__":
    run_cli(main)
