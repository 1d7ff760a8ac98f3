"""Compare raw recipes per ISO: the noisy input against each trained model, from CRVD_test.py reports.

The last step of `bash mainraw.sh`: one table of raw PSNR per ISO (the noisy input and one column
per recipe) and, per recipe, the ISOs where it falls below the noisy input, so the demo's last
lines say what each recipe does.

    python -m engine.commands.report_raw --report "official MSE" logs/builtin_raw/report.json \
        --report "Gaussian likelihood" logs/builtin_raw_gaussian/report.json
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from datasets.crvd import ISOS
from utils.errors import UserArgumentParser, UserError, run_cli


def read_report(path: str) -> dict[str, Any]:
    """A `CRVD_test.py --results_json` file; `UserError` when missing or not such a report."""
    try:
        report = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"--report: cannot read '{path}': {getattr(exc, 'strerror', None) or exc}") from None
    if not isinstance(report, dict) or not all(str(iso) in report for iso in ISOS) or "average" not in report:
        raise UserError(f"--report: '{path}' is not a CRVD_test.py --results_json report")
    return report


def comparison_lines(reports: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """The table (rows: ISOs and the average; columns: noisy input, then each recipe) and one verdict
    line per recipe."""
    rows = [str(iso) for iso in ISOS] + ["average"]
    noisy = reports[0][1]
    width = max(12, *(len(label) for label, _ in reports))
    lines = ["raw PSNR (dB), simulated test set: noisy input vs each recipe",
             f"{'ISO':>8}  {'noisy':>8}  " + "  ".join(f"{label:>{width}}" for label, _ in reports)]
    for row in rows:
        lines.append(f"{row:>8}  {noisy[row]['noisy_psnr']:8.2f}  "
                     + "  ".join(f"{report[row]['psnr']:>{width}.2f}" for _, report in reports))
    for label, report in reports:
        worse = [str(iso) for iso in ISOS if report[str(iso)]["psnr"] < report[str(iso)]["noisy_psnr"]]
        gain = report["average"]["psnr"] - report["average"]["noisy_psnr"]
        verdict = (f"below the noisy input at ISO {', '.join(worse)}" if worse
                   else "above the noisy input at every ISO")
        lines.append(f"{label}: {verdict} ({gain:+.2f} dB on average)")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = UserArgumentParser(description="Compare CRVD_test.py reports of several raw recipes, per ISO.")
    p.add_argument("--report", nargs=2, action="append", required=True, metavar=("LABEL", "JSON"),
                   help="a recipe's label and its CRVD_test.py --results_json file (repeat per recipe)")
    args = p.parse_args(argv)
    for line in comparison_lines([(label, read_report(path)) for label, path in args.report]):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    run_cli(main)
