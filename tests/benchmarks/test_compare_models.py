"""benchmarks.compare_models: the rule that decides whether a successor default model ships."""
import json

import pytest

from benchmarks.compare_models import main
from utils.errors import run_cli

METHOD = "STBN default model as denoise.py runs it (sigma auto, finetune 160, prior auto)"


def write_run(folder, psnrs, seconds, method=METHOD):
    """A quality.json with one default-model row per (clip, sigma) -> PSNR, plus a classical row."""
    rows = []
    for (clip, sigma), psnr in psnrs.items():
        for name, value in ((method, psnr), ("TV 3-D (skimage)", 99.0)):
            rows.append({"clip": clip, "region": "held-out", "sigma": sigma, "method": name, "psnr": value,
                         "chroma_error": 2.0, "seconds": {"min": seconds, "median": seconds, "max": seconds},
                         "frames": 8, "size": [144, 176]})
    folder.mkdir()
    (folder / "quality.json").write_text(json.dumps({"rows": rows}))
    return folder


BASE = {("bikes", 10.0): 35.0, ("bikes", 25.0): 31.0, ("bunny", 25.0): 26.0}


def run(tmp_path, candidate_psnrs, candidate_seconds, capsys):
    base = write_run(tmp_path / "base", BASE, 80.0)
    candidate = write_run(tmp_path / "cand", candidate_psnrs, candidate_seconds)
    assert main([str(base), str(candidate), "--out", str(tmp_path / "c.json")]) == 0
    return json.loads((tmp_path / "c.json").read_text()), capsys.readouterr().out


def test_better_everywhere_and_fast_enough_ships(tmp_path, capsys):
    result, out = run(tmp_path, {k: v + 0.1 for k, v in BASE.items()}, 119.0, capsys)
    assert result["ships"] and result["better_in"] == 3 == result["cases"]
    assert result["median_time_ratio"] == pytest.approx(119 / 80)
    assert [p["psnr_gain"] for p in result["pairs"]] == pytest.approx([0.1, 0.1, 0.1])
    assert "better in 3 of 3 cases" in out and ": ships" in out


def test_one_case_worse_does_not_ship(tmp_path, capsys):
    result, out = run(tmp_path, {**{k: v + 1 for k, v in BASE.items()}, ("bunny", 25.0): 25.99}, 80.0, capsys)
    assert not result["ships"] and result["better_in"] == 2
    assert "does not ship" in out


def test_too_slow_does_not_ship(tmp_path, capsys):
    result, _ = run(tmp_path, {k: v + 1 for k, v in BASE.items()}, 121.0, capsys)
    assert not result["ships"] and result["median_time_ratio"] == pytest.approx(121 / 80)


def test_missing_folder_is_a_one_line_error(tmp_path, capsys):
    base = write_run(tmp_path / "base", BASE, 80.0)
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(base), str(tmp_path / "nowhere")])
    assert info.value.code == 2
    assert capsys.readouterr().err.strip() == f"error: '{tmp_path / 'nowhere'}' holds no quality.json " \
        "(a `python -m benchmarks.quality --out` folder)"
