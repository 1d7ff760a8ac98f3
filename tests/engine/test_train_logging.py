"""Metrics history files and the run logger of the training loop."""
from __future__ import annotations

import csv
import json

from engine.train.run_log import close_run_logger, setup_run_logger, write_history


def test_history_json_and_csv_hold_every_epoch_and_column(tmp_path):
    rows = [{"epoch": 1, "loss": 1.5, "val_psnr": None}, {"epoch": 2, "loss": 0.5, "val_psnr": 27.25, "lr": 1e-4}]
    write_history(tmp_path, rows)
    assert json.loads((tmp_path / "metrics.json").read_text()) == rows
    with open(tmp_path / "metrics.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert list(table[0]) == ["epoch", "loss", "val_psnr", "lr"]
    assert [(r["epoch"], r["val_psnr"], r["lr"]) for r in table] == [("1", "", ""), ("2", "27.25", "0.0001")]


def test_logger_appends_across_runs_and_rank_nonzero_writes_nothing(tmp_path, capsys):
    for message in ("first run", "second run"):
        log = setup_run_logger(tmp_path, enabled=True)
        log.info(message)
        close_run_logger(log)
    text = (tmp_path / "train.log").read_text()
    assert text.index("first run") < text.index("second run")
    assert capsys.readouterr().out == "first run\nsecond run\n"
    silent_dir = tmp_path / "rank1"
    silent_dir.mkdir()
    log = setup_run_logger(silent_dir, enabled=False)
    log.info("hidden")
    close_run_logger(log)
    assert list(silent_dir.iterdir()) == [] and capsys.readouterr().out == ""
