"""Training speed: one STBN training step, ours vs the official layout, and the data loader alone.

A step is what training does per batch: forward over the noisy clips, loss, backward, gradient
clipping at 1, Adam. "ours" is `engine.train.step.train_step` (channels-last, output stage in
batches, closed-form Gaussian loss); "official layout" runs the same network as the authors' code
does (NCHW, output stage one frame at a time, per-pixel torch.inverse / torch.det loss). Both start
from the same weights and batch; their first losses are printed to show they compute the same
thing. Variants alternate within each repeat; min / median / max seconds, frames/s and effective
GFLOP/s (3x the denoiser's forward FLOPs for forward + backward, plus the flows' forward FLOPs),
then the ratio of medians (the last line compares the float32 rows). `--compile` adds a
torch.compile row; on CUDA a bf16 autocast
row (`--amp`) is added. The data loader (built-in clip, the recipe's crops) is timed alone per batch.

    python -m benchmarks.train_speed [--configs released,small] [--batch 1] [--frames 8] [--size 96]
    python -m benchmarks.train_speed --quick      # released, 1 x 3 frames of 64x64, 3 repeats
"""
from __future__ import annotations

import argparse
import copy
import statistics

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from benchmarks.gaussian_algebra import reference_loss
from benchmarks.model_speed import CONFIGS, count_flops
from benchmarks.timing import summary, time_calls
from datasets.builtin import builtin_split
from datasets.train_clips import TrainClipDataset
from engine.inference.loading import resolve_device
from engine.train.step import GRAD_CLIP_NORM, compute_loss, train_step, training_amp_supported
from models import build_model
from utils.errors import UserError
from utils.noise import add_train_noise, sample_train_sigma, unit_sigma


def _official_step(model: nn.Module, optimizer: torch.optim.Optimizer, params: list[nn.Parameter],
                   seqn: torch.Tensor, noise_map: torch.Tensor, sigma: torch.Tensor) -> float:
    """The authors' step: per-frame output stage, per-pixel inverse/det loss, clip, Adam."""
    out = model(seqn, noise_map, output_chunk_pixels=1)[0]
    loss = reference_loss(out, seqn, sigma)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
    optimizer.step()
    return float(loss.detach())


class _Runner:
    """One variant: its own copy of the model and its own Adam, so steps do not interfere."""

    def __init__(self, model: nn.Module, layout: torch.memory_format, official: bool, compiled: bool = False,
                 amp: bool = False):
        self.model = copy.deepcopy(model)
        self.amp = amp
        self.model.set_memory_format(layout)
        self.official = official
        self.net = torch.compile(self.model) if compiled else self.model
        groups = self.model.trainable_parameters()
        self.params = [p for g in groups for p in g["params"]]
        self.optimizer = torch.optim.Adam(groups, lr=3e-4)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
        seqn, noise_map, sigma = batch
        self.model.train()
        if self.official:
            return _official_step(self.net, self.optimizer, self.params, seqn, noise_map, sigma)
        return train_step(self.net, self.optimizer, self.params, seqn, noise_map, sigma, self.amp).loss

    def first_loss(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float:
        """The loss on `batch` before any step (no update)."""
        seqn, noise_map, sigma = batch
        with torch.no_grad():
            if self.official:
                return float(reference_loss(self.model(seqn, noise_map, output_chunk_pixels=1)[0], seqn, sigma))
            return float(compute_loss(self.model, seqn, noise_map, sigma, self.amp)[0]["loglike"])


AMP_LABEL = "ours + bf16 autocast (--amp)"


def _batch(clips: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Noisy clips, noise map and sigmas as training draws them (blind sigma 5-55)."""
    clean = clips.to(device).float().div_(255)
    sigma = sample_train_sigma(clean.shape[0], [unit_sigma(5), unit_sigma(55)], device=device)
    seqn, noise_map = add_train_noise(clean, sigma)
    return seqn, noise_map, sigma.view(-1)


def _loader(batch: int, frames: int, size: int, workers: int) -> DataLoader:
    train, _ = builtin_split("bikes")
    dataset = TrainClipDataset.from_sequences([np.ascontiguousarray(train.transpose(0, 3, 1, 2))],
                                              train_length=frames, patch_size=size,
                                              patches_per_epoch=batch * 64)
    return DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers)


def _time_loader(loader: DataLoader, batches: int) -> list[float]:
    iterator = iter(loader)
    next(iterator)  # worker start-up is not per batch
    return time_calls(lambda: next(iterator), batches, warmup=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default="released,small")
    parser.add_argument("--batch", type=int, default=1, help="clips per step (the recipe: 4)")
    parser.add_argument("--frames", type=int, default=8, help="frames per clip (the recipe: 8)")
    parser.add_argument("--size", type=int, default=96, help="crop size (the recipe: 96)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--workers", type=int, default=0, help="data-loader processes for the loader row")
    parser.add_argument("--compile", action="store_true", help="add a torch.compile row (ours)")
    parser.add_argument("--quick", action="store_true", help="released only, 1 x 3 frames of 64x64, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.configs, args.batch, args.frames, args.size, args.repeats = "released", 1, 3, 64, 3
    for name in ("batch", "frames", "size", "repeats"):
        if getattr(args, name) < (2 if name == "frames" else 1):
            raise UserError(f"--{name}: too small ({getattr(args, name)})")
    configs = args.configs.split(",")
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown:
        raise UserError(f"--configs: unknown {unknown}; known: {', '.join(CONFIGS)}")
    device = resolve_device(args.device)
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"CPU, {torch.get_num_threads()} threads"
    print(f"STBN training step ({args.batch} x {args.frames} frames of {args.size}x{args.size}, "
          f"{args.repeats} repeats, {where}, torch {torch.__version__})")

    loader = _loader(args.batch, args.frames, args.size, args.workers)
    loader_times = _time_loader(loader, args.repeats)
    clips = next(iter(loader))
    ratio = bf16_ratio = None
    for name in configs:
        torch.manual_seed(0)
        model = build_model("bdc_2_unify", flow="zero", **CONFIGS[name]).to(device)
        shape = (args.batch, args.frames, 3, args.size, args.size)
        flops, flow_flops = count_flops(model, shape)
        step_flops = 3 * (flops - flow_flops) + flow_flops
        runners = {"ours (channels-last, batched, closed-form loss)": _Runner(model, torch.channels_last, False),
                   "official layout (NCHW, per frame, inverse/det)": _Runner(model, torch.contiguous_format, True)}
        if args.compile:
            runners["ours + torch.compile"] = _Runner(model, torch.channels_last, False, compiled=True)
        if training_amp_supported(device):
            runners[AMP_LABEL] = _Runner(model, torch.channels_last, False, amp=True)
        torch.manual_seed(1)
        batch = _batch(clips, device)
        losses = {label: runner.first_loss(batch) for label, runner in runners.items()}
        times: dict[str, list[float]] = {label: [] for label in runners}
        for repeat in range(args.repeats + 1):  # round 0 warms up (and compiles)
            for label, runner in runners.items():
                elapsed = time_calls(lambda: runner.step(batch), 1, device, warmup=0)
                if repeat:
                    times[label] += elapsed
        frames = args.batch * args.frames
        print(f"\n{name}: {step_flops / 1e9:.1f} GFLOP per step ({flops / frames / args.size ** 2 / 1e6:.2f} "
              "MFLOP per pixel and frame forward)")
        medians = {label: statistics.median(v) for label, v in times.items()}
        for label, values in times.items():
            print(summary(label, values) + f"  | {frames / medians[label]:6.2f} frames/s"
                  f"  {step_flops / medians[label] / 1e9:6.1f} GFLOP/s  loss {losses[label]:.6f}")
        first, official = list(medians)[:2]
        for label in list(losses)[1:]:
            print(f"  loss difference to {first.split(' (')[0]}: {label}: {abs(losses[first] - losses[label]):.2e}")
        for label in list(medians)[1:]:
            print(f"  median time {label} / {first}: {medians[label] / medians[first]:.2f}x")
        if name == "released" or ratio is None:
            ratio = medians[official] / medians[first]
            bf16_ratio = medians[official] / medians[AMP_LABEL] if AMP_LABEL in medians else None
    print(f"\n{summary('data loader, one batch (alone)', loader_times, 'ms')}  "
          f"({args.workers} worker processes; the fastest step of {configs[-1]} above takes "
          f"{1e3 * min(statistics.median(v) for v in times.values()):.0f} ms)")
    print(f"train step ours/official: {ratio:.2f}x")
    if bf16_ratio is not None:
        print(f"train step bf16 ours/official fp32: {bf16_ratio:.2f}x")
    else:
        print(f"(no bf16 row: --amp trains in bf16 on CUDA only; on {device.type} it trains in float32)")
    return 0


if __name__ == "__main__":
    from utils.errors import run_cli

    run_cli(main)
