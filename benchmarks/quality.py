"""Denoising quality on the built-in real clips, no training data needed.

The held-out frames of the built-in clips (`datasets.builtin.builtin_split`) get the official test
noise (seed 0, unclipped; the same noise for every method) at each sigma, and every method is
scored with the official per-frame PSNR / SSIM (outputs clamped to [0, 1]):
noisy input; OpenCV multi-frame NLM (5-frame window); 3-D TV; wavelet BayesShrink; BM4D on a small
crop (`--bm4d`); a small STBN trained on the clip's training frames for `--stbn_minutes` of CPU,
and the same network fine-tuned on the noisy clip itself. The NLM and TV strengths are tuned per
sigma on the first training frames of one clip (never on the evaluation frames).
Writes a table (stdout), `quality.json` and `quality.png` into --out with the commit and machine.

    python -m benchmarks.quality [--bm4d] [--stbn_minutes 10 | --skip_stbn] [--quick]
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.classical import NLM_TEMPORAL_WINDOW, bm3d_video, bm4d_video, nlm_video, tv_video, wavelet_video
from benchmarks.common import REPO_ROOT, run_record, timed
from benchmarks.optional_packages import import_or_install
from benchmarks.quality_report import format_table, plot_bars, write_json
from benchmarks.scoring import noisy_clip, score, tune_parameter
from datasets.builtin import builtin_split
from utils.noise import unit_sigma

NLM_H_FACTORS = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)     # h = factor x sigma (0-255 scale)
TV_WEIGHT_FACTORS = (0.4, 0.5, 0.65, 0.8, 1.0, 1.25)  # weight = factor x sigma ([0, 1] scale)
Denoiser = Callable[[np.ndarray], np.ndarray]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def centre_crop(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """The central height x width window of (T,H,W,C) frames (the whole frame where it is smaller)."""
    h, w = frames.shape[1:3]
    top, left = max(0, (h - height) // 2), max(0, (w - width) // 2)
    return frames[:, top:top + height, left:left + width]


def clip_frames(name: str, crop: tuple[int, int], max_frames: int | None) -> tuple[np.ndarray, np.ndarray]:
    """(training frames, evaluation frames) of a built-in clip as float [0, 1], centre-cropped."""
    train, held_out = builtin_split(name)
    held_out = held_out[:max_frames]
    return (centre_crop(train, *crop).astype(np.float32) / 255.0,
            centre_crop(held_out, *crop).astype(np.float32) / 255.0)


def tune_classical(train_clean: np.ndarray, sigmas: list[float]) -> dict[float, dict]:
    """Per sigma, the NLM h and TV weight with the best PSNR on a few training frames."""
    tuned = {}
    for sigma in sigmas:
        noisy = noisy_clip(train_clean, unit_sigma(sigma))
        h, h_scores = tune_parameter(nlm_video, [f * sigma for f in NLM_H_FACTORS],
                                     noisy, train_clean)
        weight, w_scores = tune_parameter(tv_video, [f * unit_sigma(sigma) for f in TV_WEIGHT_FACTORS],
                                          noisy, train_clean)
        tuned[sigma] = {"nlm_h": h, "nlm_psnr_by_h": h_scores, "tv_weight": weight,
                        "tv_psnr_by_weight": w_scores}
        log(f"tuned sigma {sigma:g}: NLM h {h:g}, TV weight {weight:.4f}")
        for name, best, scores in (("NLM h", h, h_scores), ("TV weight", weight, w_scores)):
            if best in (min(scores), max(scores)):
                log(f"warning: {name} {best:g} is at the edge of its grid at sigma {sigma:g}")
    return tuned


def classical_methods(sigma: float, tuned: dict, pywt_ok: bool, bm3d=None) -> dict[str, tuple[Denoiser, dict]]:
    """name -> (denoiser of a (T,H,W,3) noisy clip, its parameters) for one sigma (0-255 scale);
    BM3D per frame when the `bm3d` module is given."""
    methods = {
        "noisy input": (lambda x: x, {}),
        f"NLM-multi (OpenCV, {NLM_TEMPORAL_WINDOW} frames, uint8 in)":
            (lambda x: nlm_video(x, tuned["nlm_h"]), {"h": tuned["nlm_h"]}),
        "TV 3-D (skimage)": (lambda x: tv_video(x, tuned["tv_weight"]), {"weight": tuned["tv_weight"]}),
    }
    if pywt_ok:
        methods["wavelet BayesShrink (skimage)"] = (lambda x: wavelet_video(x, unit_sigma(sigma)),
                                                   {"sigma": "given"})
    if bm3d is not None:
        methods["BM3D per frame (bm3d, true sigma)"] = (lambda x: bm3d_video(x, unit_sigma(sigma), bm3d),
                                                        {"sigma": "given"})
    return methods


def make_row(clip: str, region: str, sigma: float, method: str, output: np.ndarray, clean: np.ndarray,
             seconds: dict | None, parameters: dict) -> dict:
    """One scored result; `seconds` is None where the output was only re-scored, not re-computed."""
    row = {"clip": clip, "region": region, "sigma": sigma, "method": method, **score(output, clean),
           "seconds": seconds, "frames": int(clean.shape[0]), "size": list(clean.shape[1:3]),
           "parameters": parameters}
    log(f"  {clip} {region} sigma {sigma:g} {method}: {row['psnr']:.2f} dB / {row['ssim']:.4f} "
        + (f"({seconds['median']:.1f} s)" if seconds else "(re-scored)"))
    return row


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--clips", nargs="+", default=["carphone", "bikes"], help="built-in clips to evaluate")
    p.add_argument("--sigmas", type=float, nargs="+", default=[10.0, 30.0, 50.0], help="0-255 scale")
    p.add_argument("--crop", type=int, nargs=2, default=[144, 176], metavar=("H", "W"),
                   help="centre crop of every frame (carphone is 144x176 already)")
    p.add_argument("--max_frames", type=int, help="evaluate on the first N held-out frames only")
    p.add_argument("--tune_clip", default="carphone", help="clip whose first training frames tune NLM and TV")
    p.add_argument("--tune_frames", type=int, default=6)
    p.add_argument("--repeats", type=int, default=1, help="timing repeats of each method (min/median/max)")
    p.add_argument("--bm4d", action="store_true", help="add BM4D (installed into a temp folder for this run)")
    p.add_argument("--no_bm3d", action="store_true",
                   help="leave out the BM3D-per-frame row (the bm3d package, benchmarks/requirements-optional.txt; "
                        "installed into a temp folder for this run when missing)")
    p.add_argument("--bm4d_crop", type=int, default=64, help="side of BM4D's centre square crop")
    p.add_argument("--bm4d_frames", type=int, default=8, help="held-out frames BM4D denoises")
    p.add_argument("--skip_stbn", action="store_true")
    p.add_argument("--default_model", action="store_true",
                   help="add the shipped default model (denoise.py without --model_file): at the true sigma, "
                        "at its blind estimate (--sigma auto), and fine-tuned on the noisy clip")
    p.add_argument("--model_file", help="with --default_model: benchmark this checkpoint in the default model's "
                                        "rows instead of weights/stbn_blind_small.pth (e.g. a successor)")
    p.add_argument("--device", default="cpu", help="device of the default-model rows (cpu, cuda, auto)")
    p.add_argument("--stbn_minutes", type=float, default=10.0, help="CPU training budget per clip")
    p.add_argument("--stbn_clips", nargs="+", help="clips with STBN rows (default: all --clips)")
    p.add_argument("--finetune_steps", type=int, default=10, help="fine-tuning iterations per clip and sigma")
    p.add_argument("--only", nargs="+", metavar="WORDS",
                   help="run only the methods whose name contains one of these (e.g. 'denoise.py' NLM)")
    p.add_argument("--no_install", action="store_true", help="never pip-install optional packages")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: carphone 64x64, 6 frames, sigma 30, no BM4D, no STBN")
    p.add_argument("--out", type=Path, help="output folder (default benchmarks/results; a temp folder with --quick)")
    return p


def apply_quick(args: argparse.Namespace) -> None:
    args.clips, args.sigmas, args.crop, args.max_frames = ["carphone"], [30.0], [64, 64], 6
    args.tune_frames, args.bm4d, args.no_bm3d, args.skip_stbn = 4, False, True, True
    args.out = args.out or Path(tempfile.gettempdir()) / "stbn_quality_quick"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.quick:
        apply_quick(args)
    out_dir = args.out or REPO_ROOT / "benchmarks" / "results"
    notes = ["NLM gets the noisy frames clipped to [0, 255] and rounded to uint8 (OpenCV needs uint8): "
             "a slight handicap against methods that see the unclipped noise.",
             f"NLM h and TV weight tuned per sigma on the first {args.tune_frames} training frames of "
             f"'{args.tune_clip}' (same crop, official noise); evaluation uses the held-out frames."]
    pywt, pywt_note = import_or_install("pywt", "PyWavelets", install=not args.no_install)
    log(f"PyWavelets: {pywt_note}")
    if pywt is None:
        notes.append(f"wavelet row skipped: {pywt_note}")
    bm4d = None
    if args.bm4d:
        bm4d, bm4d_note = (import_or_install("bm4d", "bm4d", install=not args.no_install) if pywt
                           else (None, "bm4d needs PyWavelets"))
        log(f"bm4d: {bm4d_note}")
        notes.append(f"BM4D ({bm4d_note}) on the centre {args.bm4d_crop}x{args.bm4d_crop} crop of the first "
                     f"{args.bm4d_frames} held-out frames; every method is also scored on that region."
                     if bm4d else f"BM4D row skipped: {bm4d_note}")

    bm3d = None
    if not args.no_bm3d:
        bm4d_dependency, note = import_or_install("bm4d", "bm4d", install=not args.no_install)
        bm3d, bm3d_note = (import_or_install("bm3d", "bm3d", install=not args.no_install) if bm4d_dependency
                           else (None, note))
        log(f"bm3d: {bm3d_note}")
        notes.append(f"BM3D per frame: bm3d package ({bm3d_note}; non-commercial licence, never vendored)"
                     if bm3d else f"BM3D row skipped: {bm3d_note}")

    tune_train, _ = clip_frames(args.tune_clip, tuple(args.crop), None)
    tuned = tune_classical(tune_train[:args.tune_frames], args.sigmas)

    stbn_clips = [] if args.skip_stbn else (args.stbn_clips or args.clips)
    if stbn_clips:  # imported here so the classical rows need none of the training stack
        from benchmarks.stbn_rows import (
            SmallSTBN,
            load_small_stbn,
            stbn_denoise,
            stbn_finetune_denoise,
            train_within_budget,
        )
        config = SmallSTBN()
    trained = {}
    work_dir = Path(tempfile.mkdtemp(prefix="stbn_quality_"))
    for clip in stbn_clips:
        log(f"training small STBN on '{clip}' for {args.stbn_minutes:g} min (log_dir {work_dir / clip})")
        try:
            trained[clip] = train_within_budget(clip, args.stbn_minutes, work_dir / clip, config)
        except RuntimeError as error:  # the other rows are still worth having
            log(f"STBN rows of '{clip}' skipped: {error}")
            notes.append(f"STBN rows of '{clip}' skipped: {error}")
            continue
        log(f"  {trained[clip]['epochs']} epochs, {trained[clip]['clips_seen']} clips, "
            f"{trained[clip]['seconds']:.0f} s")
    if stbn_clips:
        notes.append(f"STBN small = {config}; trained with sRGB_train_bsn.py --builtin CLIP (sigma 5-55, "
                     f"DIS flow: no PWC-Net weights offline) for a {args.stbn_minutes:g}-minute CPU budget; "
                     f"'+ finetune' adds {args.finetune_steps} steps of engine.train.finetune on the noisy clip "
                     "(uint8, as denoise.py --finetune); its seconds include the fine-tuning.")

    rows, rescored = [], {}
    for clip in args.clips:
        _, clean = clip_frames(clip, tuple(args.crop), args.max_frames)
        log(f"{clip}: {clean.shape[0]} held-out frames {clean.shape[1]}x{clean.shape[2]}")
        for sigma in args.sigmas:
            noisy = noisy_clip(clean, unit_sigma(sigma))
            methods = classical_methods(sigma, tuned[sigma], pywt is not None, bm3d)
            if args.default_model:
                methods |= default_model_methods(sigma, args.finetune_steps, args.model_file, args.device, rescored)
            if clip in trained:
                ckpt = trained[clip]["checkpoint"]
                methods[f"STBN small ({args.stbn_minutes:g} min CPU)"] = (
                    lambda x: stbn_denoise(load_small_stbn(ckpt, config), x, unit_sigma(sigma)),
                    {"epochs": trained[clip]["epochs"]})
                methods[f"STBN small + finetune {args.finetune_steps}"] = (
                    lambda x: stbn_finetune_denoise(load_small_stbn(ckpt, config), x, unit_sigma(sigma),
                                                    args.finetune_steps, config),
                    {"finetune_steps": args.finetune_steps})
            if args.only:
                methods = {name: method for name, method in methods.items() if any(w in name for w in args.only)}
            outputs = {}
            for method, (denoise, parameters) in methods.items():
                outputs[method], seconds = timed(lambda: denoise(noisy), args.repeats)
                rows.append(make_row(clip, "held-out", sigma, method, outputs[method], clean, seconds, parameters))
            for method, output in rescored.items():  # variants of a run above, without its last step
                rows.append(make_row(clip, "held-out", sigma, method, output, clean, None, {"lowfreq_anchor": 0}))
            rescored.clear()
            if bm4d is not None:
                rows += bm4d_region_rows(clip, sigma, clean, noisy, outputs, bm4d, args)

    record = run_record()
    table = format_table(rows)
    print(table)
    name = "quality_quick" if args.quick else "quality"
    write_json(out_dir / f"{name}.json", {"record": record, "settings": vars(args), "notes": notes,
                                          "tuning": tuned, "stbn_training": trained, "rows": rows})
    plot_bars(rows, out_dir / f"{name}.png",
              f"official noise, PSNR of held-out frames; commit {record['commit'][:12]}, "
              f"{record['machine']['cpu']}, {record['date']}")
    print("\n".join(f"note: {n}" for n in notes))
    print(f"wrote {out_dir / name}.json and .png (commit {record['commit']}, {record['machine']['cpu']}, "
          f"{record['machine']['logical_cores']} cores, torch {record['machine']['torch']}, "
          f"{record['machine']['torch_threads']} threads, {record['date']})")
    return 0


def default_model_methods(sigma: float, finetune_steps: int, model_file: str | None = None,
                          device: str = "cpu", rescored: dict[str, np.ndarray] | None = None,
                          ) -> dict[str, tuple[Denoiser, dict]]:
    """Rows of the shipped default model (engine.inference.loading.DEFAULT_MODEL_FILE, or `model_file`)
    at one sigma (0-255), run on `device`."""
    import torch

    from benchmarks.stbn_rows import SmallSTBN, anchored, stbn_denoise, stbn_finetune_denoise
    from engine.inference.anchor import DEFAULT_ANCHOR_PX
    from engine.inference.loading import DEFAULT_MODEL_FILE, load_denoiser, resolve_device
    from engine.train.finetune import (
        DEFAULT_MODEL_FINETUNE_STEPS,
        VIDEO_BATCH_SIZE,
        VIDEO_PATCH_SIZE,
        VIDEO_TRAIN_LENGTH,
    )
    from utils.noise_estimate import estimate_noise_sigma

    def model() -> torch.nn.Module:
        return load_denoiser(model_file or DEFAULT_MODEL_FILE, resolve_device(device))[0]

    rescored = {} if rescored is None else rescored
    crops = SmallSTBN(batch_size=VIDEO_BATCH_SIZE, patch_size=VIDEO_PATCH_SIZE, train_length=VIDEO_TRAIN_LENGTH)

    def as_denoise_py_runs_it(noisy: np.ndarray, steps: int) -> np.ndarray:
        """denoise.py with the default model and `--finetune steps`; a fine-tuned run's output before the
        anchor goes to `rescored` (the same run, --lowfreq_anchor 0)."""
        sigma_estimate = estimate_noise_sigma(noisy)
        if not steps:
            return anchored(stbn_denoise(model(), noisy, sigma_estimate, None), noisy, DEFAULT_ANCHOR_PX,
                            sigma_estimate)
        output = stbn_finetune_denoise(model(), noisy, sigma_estimate, steps, crops, None)
        rescored[f"STBN default model as denoise.py runs it, --lowfreq_anchor 0 (finetune {steps}, "
                 "prior scale auto)"] = output
        return anchored(output, noisy, DEFAULT_ANCHOR_PX, sigma_estimate)

    rows = {
        "STBN default model": (lambda x: stbn_denoise(model(), x, unit_sigma(sigma)), {"sigma": "given"}),
        "STBN default model, sigma auto": (lambda x: stbn_denoise(model(), x, estimate_noise_sigma(x)),
                                           {"sigma": "estimated"}),
        "STBN default model, prior scale auto": (lambda x: stbn_denoise(model(), x, unit_sigma(sigma), None),
                                                 {"sigma": "given", "prior_scale": "fitted"}),
        "STBN default model, sigma + prior scale auto": (
            lambda x: stbn_denoise(model(), x, estimate_noise_sigma(x), None),
            {"sigma": "estimated", "prior_scale": "fitted"}),
        "STBN default model as denoise.py --finetune 0 runs it (sigma + prior scale auto, low-frequency anchor)": (
            lambda x: as_denoise_py_runs_it(x, 0),
            {"sigma": "estimated", "prior_scale": "fitted", "lowfreq_anchor": DEFAULT_ANCHOR_PX}),
        f"STBN default model as denoise.py runs it (sigma auto, finetune {DEFAULT_MODEL_FINETUNE_STEPS}, "
        "prior scale auto, low-frequency anchor)": (
            lambda x: as_denoise_py_runs_it(x, DEFAULT_MODEL_FINETUNE_STEPS),
            {"sigma": "estimated", "finetune_steps": DEFAULT_MODEL_FINETUNE_STEPS, "prior_scale": "fitted",
             "lowfreq_anchor": DEFAULT_ANCHOR_PX}),
    }
    for prior_scale, label in ((1.0, ""), (None, ", prior scale auto")):
        rows[f"STBN default model + finetune {finetune_steps}{label}"] = (
            lambda x, scale=prior_scale: stbn_finetune_denoise(model(), x, unit_sigma(sigma), finetune_steps,
                                                               crops, scale),
            {"finetune_steps": finetune_steps, "prior_scale": "fitted" if prior_scale is None else 1.0})
    return rows


def bm4d_region_rows(clip: str, sigma: float, clean: np.ndarray, noisy: np.ndarray, outputs: dict,
                     bm4d, args: argparse.Namespace) -> list[dict]:
    """BM4D on its small crop, and every other method's output scored on that same region."""
    def region(frames: np.ndarray) -> np.ndarray:
        return centre_crop(frames[:args.bm4d_frames], args.bm4d_crop, args.bm4d_crop)

    rows = [make_row(clip, "BM4D crop", sigma, method, region(output), region(clean),
                     None, {"scored_on": "crop of its held-out output"})
            for method, output in outputs.items()]
    den, seconds = timed(lambda: bm4d_video(region(noisy), unit_sigma(sigma), bm4d), args.repeats)
    rows.append(make_row(clip, "BM4D crop", sigma, "BM4D (opponent colour)", den, region(clean), seconds, {}))
    return rows


if __name__ == "__main__":
    sys.exit(main())
