"""Self-supervised STBN training, as the official `sRGB_train_bsn.py` does it, plus resume and DDP.

The official loop: clean clips are only used for logging; AWGN is added on the fly (one sigma per
clip, never clipped) and the noisy clip goes through `train_step` (engine/train/step.py: Gaussian
log-likelihood on all frames, gradient clipping at 1, Adam over the denoiser's five parameter
groups with PWC-Net frozen); MultiStepLR steps once per epoch; after each epoch the posterior
mean is validated by the official protocol and `ckpt_e{N}.pth` is written.

The pieces live by job: the command line (engine/train/args.py), the data (engine/train/data.py),
the step (engine/train/step.py), the model, resume and checkpoint contents (engine/train/setup.py)
and, here, the loop and validation. Flow distillation (engine/train/distill.py) and the ablations are
options of the same loop; the variant is the `StbnConfig` stored in the checkpoint.

Additions: seeded validation noise; resume from the newest complete checkpoint; the RNGs are
reseeded from (seed, epoch, rank) at every epoch so a resumed run repeats the numbers of an
uninterrupted one (on the same machine and software); non-finite steps are skipped and a run of
them stops training; torchrun/DDP; bf16 autocast on CUDA; logs, metrics history, curves, TensorBoard.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from engine.inference.loading import save_pwc_weights
from engine.train.args import build_arg_parser, validate_args
from engine.train.data import load_train_dataset, load_val_sequences
from engine.train.distill import FlowDistillation
from engine.train.distributed import (
    DistContext,
    all_ranks_true,
    barrier,
    setup_distributed,
    teardown_distributed,
    wrap_ddp,
)
from engine.train.run_log import LOG_FILE, TensorBoardSink, close_run_logger, setup_run_logger, write_history
from engine.train.setup import (
    build_distillation,
    build_training_model,
    check_resume_variant,
    checkpoint_state,
    find_resume,
    seed_epoch,
)
from engine.train.step import GRAD_CLIP_NORM, StepResult, compute_loss, train_step, training_amp_supported
from engine.train.tasks import NonFiniteOutputs, SrgbTask, TrainingTask
from utils.atomic import remove_temp_files
from utils.checkpoint import checkpoint_path, latest_checkpoint, save_checkpoint
from utils.errors import UserError, warn
from utils.lock import LOCK_NAME, exclusive_lock
from utils.noise import parse_noise_ival, parse_sigma, unit_sigma
from utils.plots import plot_training_curves

__all__ = ["GRAD_CLIP_NORM", "StepResult", "build_arg_parser", "compute_loss", "main", "srgb_data", "train",
           "train_step", "validate_args"]

# Consecutive non-finite steps after which training stops (the last checkpoint stays intact).
MAX_NONFINITE_IN_A_ROW = 5
CURVES_PNG = "curves.png"
# Names of the logged training metrics in the log line (the official 'PSNR_train' / 'PSNR_train_m').
TRAIN_LOG_NAMES = {"psnr": "PSNR_train", "psnr_mean": "PSNR_train_m"}


class NonFiniteGuard:
    """Counts skipped non-finite steps and says when a run of them means the training diverged."""

    def __init__(self, limit: int = MAX_NONFINITE_IN_A_ROW) -> None:
        self.limit, self.in_a_row, self.total = limit, 0, 0

    def record(self, finite: bool) -> bool:
        """Note one step; True when `limit` non-finite steps came in a row."""
        self.in_a_row = 0 if finite else self.in_a_row + 1
        self.total += 0 if finite else 1
        return self.in_a_row >= self.limit


def _run_epoch(model: nn.Module, loader: DataLoader, optimizer, params: list[nn.Parameter],
               args: argparse.Namespace, task: TrainingTask, epoch: int, ctx: DistContext,
               amp: bool, guard: NonFiniteGuard, log, board: TensorBoardSink,
               distillation: FlowDistillation | None = None, deadline: float | None = None) -> dict[str, Any]:
    """Train one epoch; returns its mean loss, skipped steps, throughput and iterations run.

    At `deadline` (a `time.monotonic()` value, --time_budget) the epoch ends after the current
    step, on every rank alike; the caller then finishes the epoch as usual and stops.
    """
    model.train()
    losses: list[float] = []
    window: list[float] = []
    skipped_before = guard.total
    frames_per_step = None
    start = time.perf_counter()
    bar = tqdm(total=len(loader), desc=f"epoch {epoch}/{args.epochs}", unit="it", file=sys.stderr,
               disable=not ctx.is_main, dynamic_ncols=True, leave=False)
    done = 0
    for iteration, item in enumerate(loader, start=1):
        batch = task.prepare(item, ctx.device)
        frames_per_step = batch.noisy.shape[0] * batch.noisy.shape[1] * ctx.world_size
        step = (epoch - 1) * len(loader) + iteration
        distill_now = distillation if distillation is not None and distillation.active(step) else None
        result = task.step(model, optimizer, params, batch, amp, distill_now, ctx)
        finite, loss, out = result.finite, result.loss, result.out
        if guard.record(finite):
            bar.close()
            last = latest_checkpoint(args.log_dir)
            raise UserError(f"training stopped at epoch {epoch}, iteration {iteration}: {guard.limit} "
                            f"non-finite losses or gradients in a row ({guard.total} in all); "
                            + (f"the last good checkpoint is '{last}'" if last else "no checkpoint was written yet")
                            + "; try a lower --lr")
        if finite:
            losses.append(loss)
            window.append(loss)
        elapsed = time.perf_counter() - start
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}" if losses else "nan",
                        fps=f"{iteration * frames_per_step / max(elapsed, 1e-9):.1f}")
        if ctx.is_main and iteration % args.print_every == 0 and window:
            with torch.no_grad():
                metrics = task.train_metrics(out, batch)
            shown = " ".join(f"{TRAIN_LOG_NAMES.get(k, k)} {v:.2f}" for k, v in metrics.items())
            log.info(f"epoch {epoch} iter {iteration}/{len(loader)} loss {np.mean(window):.4f} {shown} "
                     f"lr {optimizer.param_groups[0]['lr']:.3g} skipped {guard.total - skipped_before}")
            board.scalars({"train/loss": float(np.mean(window))} | {f"train/{k}": v for k, v in metrics.items()},
                          step)
            window.clear()
        done = iteration
        if deadline is not None and not all_ranks_true(ctx, time.monotonic() < deadline):
            break
    bar.close()
    seconds = time.perf_counter() - start
    stats = {"loss": float(np.mean(losses)) if losses else float("nan"),
             "nonfinite_steps": guard.total - skipped_before, "seconds": seconds,
             "frames_per_s": done * (frames_per_step or 0) / max(seconds, 1e-9)}
    if done < len(loader):
        stats["iterations"] = done  # cut short by --time_budget
    return stats


def _make_loader(dataset: Dataset, args: argparse.Namespace, ctx: DistContext):
    """Shuffled, drop-last batches; one disjoint shard per rank under DDP."""
    sampler = (DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                  seed=args.seed, drop_last=True) if ctx.distributed else None)
    loader = DataLoader(dataset, batch_size=args.batch_size, shuffle=sampler is None, sampler=sampler,
                        drop_last=True, num_workers=args.num_workers,
                        pin_memory=ctx.device.type == "cuda")
    if len(loader) == 0:
        raise UserError(f"--patches_per_epoch {args.patches_per_epoch} gives no full batch of "
                        f"{args.batch_size} clips per process ({ctx.world_size} process(es))")
    return loader, sampler


def srgb_data(args: argparse.Namespace) -> tuple[Dataset, SrgbTask]:
    """The sRGB recipe's training clips and task (`sRGB_train_bsn.py`), from validated arguments."""
    validate_args(args)
    noise_ival = parse_noise_ival(args.noise_ival, "--noise_ival")
    val_sigma = unit_sigma(parse_sigma(args.val_noiseL, "--val_noiseL"))
    return load_train_dataset(args), SrgbTask(noise_ival, load_val_sequences(args), val_sigma)


def train(args: argparse.Namespace,
          data: Callable[[argparse.Namespace], tuple[Dataset, TrainingTask]] = srgb_data) -> dict[str, Any]:
    """Run (or resume, or finish) a training; returns the trained model, history and paths.

    `data(args)` checks the arguments and gives the training set and its task (default: the sRGB
    recipe; `CRVD_train.py` passes the raw one). Bad training data fails there, before anything is
    written to log_dir. Reruns with the same `log_dir` continue from the newest complete
    `ckpt_e{N}.pth`. Under torchrun each process trains on its shard; rank 0 validates, logs and
    writes checkpoints.
    """
    train_data, task = data(args)
    log_dir = Path(args.log_dir)
    ctx = setup_distributed(args.device)
    created = ctx.is_main and not log_dir.exists()
    log = None
    try:
        if ctx.is_main:
            _make_log_dir(log_dir)
        barrier(ctx)
        with exclusive_lock(log_dir) if ctx.is_main else nullcontext():
            log = setup_run_logger(log_dir, enabled=ctx.is_main)
            return _train(args, ctx, log, log_dir, task, train_data)
    except UserError:
        if log is not None:
            close_run_logger(log)
            log = None
        if created:
            _remove_unused_log_dir(log_dir)
        raise
    finally:
        if log is not None:
            close_run_logger(log)
        teardown_distributed(ctx)


def _require_finite_weights(model: nn.Module, epoch: int, last: Path | None) -> None:
    """Never save a checkpoint with NaN or inf weights (it would become the one to resume from)."""
    bad = next((name for name, value in model.state_dict().items()
                if value.is_floating_point() and not bool(torch.isfinite(value).all())), None)
    if bad is not None:
        raise UserError(f"training diverged: the weights hold NaN or inf after epoch {epoch} ({bad}); "
                        + _last_good(last) + "; try a lower --lr")


def _last_good(last: Path | None) -> str:
    """The newest checkpoint written, the one to go back to (every saved epoch had finite weights
    and finite validation outputs)."""
    return f"the last good checkpoint is '{last}'" if last else "no checkpoint was written"


def _make_log_dir(log_dir: Path) -> None:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--log_dir: cannot create '{log_dir}': {exc.strerror or exc}") from None


def _remove_unused_log_dir(log_dir: Path) -> None:
    """Remove a log_dir this run created when it failed before its first checkpoint (only the run's
    own log and lock files are in it then), so a mistyped option leaves nothing behind."""
    if not log_dir.is_dir() or latest_checkpoint(log_dir) is not None:
        return
    for name in (LOG_FILE, LOCK_NAME):
        (log_dir / name).unlink(missing_ok=True)
    remove_temp_files(log_dir)
    try:
        log_dir.rmdir()
    except OSError:
        pass  # something else is in it: keep it


def _train(args: argparse.Namespace, ctx: DistContext, log, log_dir: Path, task: TrainingTask,
           train_data: Dataset) -> dict[str, Any]:
    amp = args.amp and training_amp_supported(ctx.device)
    if args.amp and not amp:
        warn("--amp trains in bf16 on CUDA only (on the CPU, bf16 gradients of the dilated convolutions "
             "come out NaN in this PyTorch); training in float32")
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    resume_path, start_epoch, resume = find_resume(log_dir, ctx, log)
    history: list[dict] = list(resume.get("history", [])) if resume else []
    summary = {"log_dir": log_dir, "history": history, "last_checkpoint": resume_path,
               "start_epoch": start_epoch, "nonfinite_steps": 0}
    if resume is not None:  # options are checked first, also for a finished run
        check_resume_variant(args, resume, log_dir)
    model = build_training_model(args, resume, ctx.device)
    if start_epoch >= args.epochs:
        log.info(f"training already finished: '{resume_path}' is epoch {start_epoch} of {args.epochs}; "
                 "nothing to do (raise --epochs to train longer)")
        if ctx.is_main and history:  # a kill after the last rename may have left these behind
            write_history(log_dir, history)
            plot_training_curves(history, log_dir / CURVES_PNG)
        return {**summary, "model": model, "flow_source": model.config.flow}
    flow_source = model.config.flow
    if args.flow == "auto" and flow_source == "dis":
        log.info("no PWC-Net weights given (--pwc_weights): using OpenCV DIS optical flow instead")
    distillation = build_distillation(args, model, resume, ctx.device)
    groups = model.trainable_parameters()
    if distillation is not None:  # before the scheduler and the resume, so both know this group
        groups.append({"params": list(model.pwcnet.parameters()), "lr": args.distill_lr})
    optimizer = torch.optim.Adam(groups, lr=args.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.milestones, gamma=args.gamma)
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        log.info(f"resuming from '{resume_path}' (epoch {start_epoch} of {args.epochs} done)")
    elif getattr(args, "init_weights", None):
        log.info(f"starting from the weights of '{args.init_weights}' (new optimizer and schedule)")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    net = wrap_ddp(model, ctx, unmanaged=model.pwcnet if distillation is not None else None)
    if args.compile:  # checkpoints and validation keep using `model` itself
        net = torch.compile(net)
    loader, sampler = _make_loader(train_data, args, ctx)
    log.info(f"training {args.model} on {ctx.device} x{ctx.world_size}: flow {flow_source}, "
             f"{len(loader)} iterations/epoch, epochs {start_epoch + 1}..{args.epochs}, log_dir '{log_dir}'")
    board = TensorBoardSink(log_dir, enabled=ctx.is_main)
    guard = NonFiniteGuard()
    deadline = time.monotonic() + 60 * args.time_budget if args.time_budget else None
    try:
        for epoch in range(start_epoch + 1, args.epochs + 1):
            seed_epoch(args.seed, epoch, ctx.rank)
            if sampler is not None:
                sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            stats = _run_epoch(net, loader, optimizer, params, args, task, epoch, ctx, amp, guard,
                               log, board, distillation, deadline)
            scheduler.step()
            if ctx.is_main:
                try:
                    validation = task.validate(model, ctx.device)
                except NonFiniteOutputs as exc:
                    raise UserError(f"training diverged: {exc} after epoch {epoch}; "
                                    + _last_good(summary["last_checkpoint"]) + "; try a lower --lr") from None
                val_psnr = validation["val_psnr"]
                history.append({"epoch": epoch, "lr": lr, **stats, **validation})
                path = checkpoint_path(log_dir, epoch)
                _require_finite_weights(model, epoch, summary["last_checkpoint"])
                save_checkpoint(path, checkpoint_state(model, optimizer, scheduler, args, epoch, history,
                                                       distillation))
                if distillation is not None:  # the student, loadable with --pwc_weights
                    save_pwc_weights(model.pwcnet, log_dir / f"pwc_student_e{epoch}.pth")
                write_history(log_dir, history)
                plot_training_curves(history, log_dir / CURVES_PNG)
                board.scalars({"epoch/loss": stats["loss"], "epoch/lr": lr}
                              | ({"epoch/val_psnr": val_psnr} if val_psnr is not None else {}), epoch)
                summary["last_checkpoint"] = path
                log.info(f"epoch {epoch}: loss {stats['loss']:.4f} val PSNR "
                         + (f"{val_psnr:.2f} dB" if val_psnr is not None else "n/a (no validation set)")
                         + f", {stats['frames_per_s']:.1f} frames/s, skipped steps {stats['nonfinite_steps']}, "
                         f"saved '{path}'")
                details = {k: v for k, v in validation.items() if k != "val_psnr" and v is not None}
                if details:
                    log.info("validation: " + ", ".join(f"{k.removeprefix('val_')} {v:.2f}"
                                                        for k, v in details.items()))
            barrier(ctx)
            if "iterations" in stats or (deadline is not None and time.monotonic() >= deadline):
                log.info(f"--time_budget of {args.time_budget:g} min spent: stopped after epoch {epoch} "
                         f"({stats.get('iterations', len(loader))} of {len(loader)} iterations); rerun with "
                         "the same command to continue")
                break
    finally:
        board.close()
    summary["nonfinite_steps"] = guard.total
    return {**summary, "model": model, "flow_source": flow_source}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sRGB_train_bsn.py`."""
    train(build_arg_parser().parse_args(argv))
    return 0

