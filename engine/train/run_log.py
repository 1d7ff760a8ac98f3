"""What a long training run leaves behind for its user: train.log, a metrics history, TensorBoard.

Only rank 0 writes; other ranks get a logger that drops everything. The history is rewritten
whole after each epoch (JSON and CSV) from the list stored in the checkpoint, so a resumed run's
files always agree with the checkpoint it resumed from.
"""
from __future__ import annotations

import csv
import logging
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from utils.atomic import atomic_path
from utils.json_text import strict_json

LOG_FILE = "train.log"
HISTORY_JSON = "metrics.json"
HISTORY_CSV = "metrics.csv"


class _ConsoleHandler(logging.Handler):
    """Prints to stdout through `tqdm.write`, so log lines do not break a running progress bar."""

    def emit(self, record: logging.LogRecord) -> None:
        tqdm.write(self.format(record), file=sys.stdout)
        sys.stdout.flush()


def setup_run_logger(log_dir: Path, enabled: bool) -> logging.Logger:
    """Logger writing to `log_dir/train.log` (appending across resumes) and to stdout."""
    logger = logging.getLogger(f"stbn.train.{os.getpid()}.{log_dir.resolve()}")
    logger.propagate = False
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    if not enabled:
        logger.addHandler(logging.NullHandler())
        return logger
    logger.setLevel(logging.INFO)
    file_handler = logging.FileHandler(log_dir / LOG_FILE, mode="a", encoding="utf-8")
    file_handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%Y-%m-%d %H:%M:%S"))
    console = _ConsoleHandler()
    console.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(file_handler)
    logger.addHandler(console)
    return logger


def close_run_logger(logger: logging.Logger) -> None:
    """Close the file handle (tests and library callers train several times in one process)."""
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def write_history(log_dir: Path, history: list[dict[str, Any]]) -> None:
    """Write the per-epoch metrics as `metrics.json` and `metrics.csv` (one row per epoch)."""
    with atomic_path(log_dir / HISTORY_JSON, "metrics") as tmp:
        tmp.write_text(strict_json(history, indent=1), encoding="utf-8")
    columns: list[str] = []
    for row in history:
        columns += [key for key in row if key not in columns]
    with atomic_path(log_dir / HISTORY_CSV, "metrics") as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(history)


class TensorBoardSink:
    """Scalars to TensorBoard when the `tensorboard` package is installed; silently nothing otherwise."""

    def __init__(self, log_dir: Path, enabled: bool) -> None:
        self._writer = None
        if not enabled:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # optional dependency
            return
        self._writer = SummaryWriter(log_dir=str(log_dir / "tensorboard"))

    @property
    def active(self) -> bool:
        return self._writer is not None

    def scalars(self, values: dict[str, float], step: int) -> None:
        if self._writer is not None:
            for name, value in values.items():
                self._writer.add_scalar(name, value, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
