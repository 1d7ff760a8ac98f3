"""mainraw.sh's last lines: per-ISO table of the noisy input and each recipe, and what each does."""
import json

import numpy as np
import pytest

from datasets.crvd import ISOS
from engine.commands.evaluate_raw import texture_energy, textured_crop
from engine.commands.report_raw import comparison_lines, main
from tests.test_robustness import cli, the_error


def _report(psnrs, noisy):
    rows = {str(iso): {"psnr": p, "noisy_psnr": n} for iso, p, n in zip(ISOS, psnrs, noisy)}
    rows["average"] = {"psnr": float(np.mean(psnrs)), "noisy_psnr": float(np.mean(noisy))}
    return rows


NOISY = [37.8, 34.8, 32.0, 29.0, 26.0]


def test_the_table_and_the_verdicts_come_from_the_numbers():
    mse = _report([33.7, 33.6, 33.4, 33.1, 32.6], NOISY)
    gaussian = _report([41.1, 39.3, 37.7, 36.0, 34.5], NOISY)
    lines = comparison_lines([("official MSE", mse), ("gaussian", gaussian)])
    assert lines[2].split() == ["1600", "37.80", "33.70", "41.10"]
    assert lines[-3].split()[0] == "average"
    assert lines[-2] == "official MSE: below the noisy input at ISO 1600, 3200 (+1.36 dB on average)"
    assert lines[-1] == "gaussian: above the noisy input at every ISO (+5.80 dB on average)"


def test_the_command_reads_reports_and_refuses_other_files(tmp_path, capsys):
    good = tmp_path / "a.json"
    good.write_text(json.dumps(_report([38.0, 35.0, 33.0, 30.0, 27.0], NOISY)))
    code, out, _ = cli(main, ["--report", "ours", good], capsys)
    assert code == 0 and "ours: above the noisy input at every ISO" in out
    other = tmp_path / "b.json"
    other.write_text(json.dumps({"psnr": 1}))
    code, _, err = cli(main, ["--report", "ours", other], capsys)
    assert code == 2 and "is not a CRVD_test.py --results_json report" in the_error(err)


@pytest.mark.parametrize("top, left", [(0, 0), (10, 30), (36, 70)])
def test_the_picture_crop_lands_on_the_texture(top, left):
    image = np.full((100, 150, 3), 0.5)
    image[top:top + 20, left:left + 30] = np.random.default_rng(0).random((20, 30, 3))
    found = textured_crop(image, 20, 30)
    assert abs(found[0] - top) <= 2 and abs(found[1] - left) <= 2
    assert texture_energy(image) > texture_energy(np.full((100, 150, 3), 0.5)) == 0
