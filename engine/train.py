"""Self-supervised STBN training, as the official `sRGB_train_bsn.py` does it, plus resume and DDP.

The official loop (stbn-reference.md §6): clean clips are only used for logging; AWGN is added
on the fly (one sigma per clip, never clipped) and the noisy clip is both the input and the
target of the Gaussian log-likelihood loss on all frames; gradients are clipped to norm 1; Adam
(lr 3e-4) optimises the denoiser's five parameter groups with PWC-Net frozen; MultiStepLR steps
once per epoch; after each epoch the posterior mean is validated and `ckpt_e{N}.pth` is written.

Flow distillation (official `sRGB_train_bsn_flow.py` with `bdc_flow`, see engine/distill.py) and
the paper's ablation switches (`--align`, `--no_bsa`, `--no_srfe`) are options of the same loop;
the variant is stored in the checkpoint's `args`, which the evaluation reads back.

Additions: seeded validation noise and the official per-frame PSNR; resume from the newest
complete checkpoint; the RNGs are reseeded from (seed, epoch, rank) at every epoch so a resumed
run repeats the numbers of an uninterrupted one; non-finite steps are skipped and a run of them
stops training; torchrun/DDP; bf16 autocast on CUDA; logs, metrics history, curves, TensorBoard.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
import time
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from datasets.builtin import builtin_split
from datasets.eval_sequences import EvalSequenceDataset
from datasets.train_clips import TrainClipDataset
from engine.denoiser import ALIGN_CHOICES, DEVICE_CHOICES, FLOW_CHOICES, variant_options
from engine.distill import (FLOW_LOSS_WEIGHT, NORM_WEIGHT, PAPER_DISTILL_START, STUDENT_INITS, STUDENT_LR,
                            TEACHER_KEY, TEACHERS, FlowDistillation, he_init_)
from engine.distributed import (DistContext, all_ranks_true, average_gradients, barrier, broadcast_object,
                                setup_distributed, teardown_distributed)
from engine.inference import denoise_sequence
from engine.logging_utils import (TensorBoardSink, close_run_logger, setup_run_logger,
                                  write_history)
from models import build_model
from models.pwc import PWCNet, load_pwc_weights, save_pwc_weights
from utils.atomic import remove_temp_files
from utils.checkpoint import (CHECKPOINT_NAME, add_module_prefix, checkpoint_path, latest_checkpoint,
                              load_checkpoint, load_model_weights, pwc_weights_trained, save_checkpoint)
from utils.errors import UserArgumentParser, UserError, warn
from utils.gaussian import loglike_loss, posterior_mean
from utils.metrics import sequence_psnr
from utils.noise import add_test_noise, add_train_noise, parse_noise_ival, parse_sigma, sample_train_sigma
from utils.plots import plot_training_curves

GRAD_CLIP_NORM = 1.0
# Consecutive non-finite steps after which training stops (the last checkpoint stays intact).
MAX_NONFINITE_IN_A_ROW = 5
CURVES_PNG = "curves.png"


# Training sigma range per model when --noise_ival is not given: each official script's default.
DEFAULT_NOISE_IVAL = {"bdc_2_unify": (5.0, 55.0), "stbn": (5.0, 55.0), "bdc_flow": (30.0, 30.0)}


def build_arg_parser() -> argparse.ArgumentParser:
    """Every official `sRGB_train_bsn.py` argument with its official default, plus our options."""
    p = UserArgumentParser(description="Self-supervised STBN training on sRGB videos.")
    official = p.add_argument_group("official arguments (defaults as the authors' script)")
    official.add_argument("--model", default="bdc_2_unify",
                          help="network: bdc_2_unify (= stbn, the released model) or bdc_flow")
    official.add_argument("--num_resblocks", type=int, default=5,
                          help="residual units of the fusion blocks (the head gets half)")
    official.add_argument("--train_length", type=int, default=8, help="frames per training clip")
    official.add_argument("--batch_size", type=int, default=4, help="clips per step (per process)")
    official.add_argument("--epochs", "--e", type=int, default=10, help="number of epochs")
    official.add_argument("--milestones", type=int, nargs="+", default=[2, 4, 6, 8],
                          help="epochs after which the learning rate is multiplied by --gamma")
    official.add_argument("--gamma", type=float, default=0.5, help="learning-rate decay factor")
    official.add_argument("--lr", type=float, default=3e-4, help="Adam learning rate")
    official.add_argument("--print_every", type=int, default=200, help="log every N iterations")
    official.add_argument("--noise_ival", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                          help="training sigma range on the 0-255 scale; equal values = fixed sigma "
                               f"(default: {' '.join(map(str, DEFAULT_NOISE_IVAL['bdc_2_unify']))}, as the "
                               "authors' main script; 30 30 for bdc_flow, as their distillation script)")
    official.add_argument("--val_noiseL", type=float, default=30.0,
                          help="validation sigma on the 0-255 scale")
    official.add_argument("--patch_size", "--p", type=int, default=96, help="training crop size")
    official.add_argument("--patches_per_epoch", "--n", type=int, default=32000,
                          help="training clips per epoch (all processes together)")
    official.add_argument("--trainset_dir", help="training frames: one sub-folder of frames per sequence")
    official.add_argument("--valset_dir", help="validation frames: one sub-folder per sequence (e.g. Set8)")
    official.add_argument("--log_dir", help="checkpoints and logs (default logs/builtin with --builtin, "
                                            "else logs/stbn); rerunning resumes")
    extra = p.add_argument_group("additional options")
    extra.add_argument("--num_channels", type=int, default=64, help="hidden feature width")
    extra.add_argument("--builtin", metavar="CLIP",
                       help="train on a built-in clip's training part, validate on its held-out part")
    extra.add_argument("--val_max_frames", type=int, default=85,
                       help="frames per validation sequence (official 85)")
    extra.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    extra.add_argument("--pwc_weights", help="PWC-Net weights (authors' file or an STBN checkpoint)")
    extra.add_argument("--flow", default="auto", choices=FLOW_CHOICES,
                       help="auto = PWC-Net when weights are known, else OpenCV DIS; zero = static scenes")
    extra.add_argument("--seed", type=int, default=0, help="seed of crops, noise and shuffling")
    extra.add_argument("--num_workers", type=int, default=4, help="data-loader processes")
    extra.add_argument("--amp", action="store_true", help="bf16 autocast (CUDA only)")
    extra.add_argument("--augment", action="store_true", help="random flips and rotations of clips")
    ablation = p.add_argument_group(
        "ablations (paper Table 3, Set8 sigma 30: propagation only = --no_bsa --no_srfe; + BSA = --no_srfe; "
        "+ SRFE = no switch; + distillation = --distill); recorded in the checkpoint, evaluated as trained")
    ablation.add_argument("--align", default="nearest", choices=ALIGN_CHOICES,
                          help="hidden-state warp: nearest (official), bilinear (FloRNN, correlates the "
                               "noise), softsplat (average forward splatting)")
    ablation.add_argument("--no_bsa", action="store_true",
                          help="no blind-spot alignment block: the state is the blind-spot cell's output")
    ablation.add_argument("--no_srfe", action="store_true",
                          help="no SRFE: a per-pixel 1x1 convolution fuses the two directions")
    distill = p.add_argument_group(
        "flow distillation (student = the model's PWC-Net, trained on the noisy frames towards a teacher's "
        "flows on the predicted mean; the denoising loss never reaches it)")
    distill.add_argument("--distill", dest="distill", action="store_const", const=True, default=None,
                         help="train the PWC-Net by distillation (default: on for bdc_flow, off for bdc_2_unify)")
    distill.add_argument("--no_distill", dest="distill", action="store_const", const=False,
                         help="keep bdc_flow's PWC-Net frozen")
    distill.add_argument("--teacher", default="pwc", choices=TEACHERS,
                         help="pwc: frozen copy of the initial PWC-Net (official; needs --pwc_weights); "
                              "dis: OpenCV DIS flow, so a student can learn from random weights offline "
                              "(then align with --flow dis while it learns)")
    distill.add_argument("--distill_start", type=int, default=PAPER_DISTILL_START,
                         help="iterations before the flow loss is switched on (paper 1000, official code 0)")
    distill.add_argument("--distill_weight", type=float, default=FLOW_LOSS_WEIGHT,
                         help="weight alpha of the flow loss (paper and official 5e-4)")
    distill.add_argument("--distill_lr", type=float, default=STUDENT_LR,
                         help="Adam learning rate of the student (official 1e-5; MultiStepLR scales it too)")
    distill.add_argument("--distill_norm_weight", type=float, default=NORM_WEIGHT,
                         help="weight of the student's summed parameter norms inside the flow loss "
                              "(official 4e-4; 0 drops the term)")
    distill.add_argument("--student_init", default="default", choices=STUDENT_INITS,
                         help="initial student without --pwc_weights: default (PyTorch's layer init; its cost "
                              "volumes are ~1e-4) or he (He init, zero flow heads; a from-scratch aid, not the paper's)")
    return p


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)


def validate_args(args: argparse.Namespace) -> None:
    """Reject inconsistent arguments with a one-line `UserError`; fill in the default log_dir."""
    _require((args.trainset_dir is None) != (args.builtin is None),
             "give exactly one of --trainset_dir DIR (one sub-folder of frames per sequence) or --builtin CLIP")
    for name in ("trainset_dir", "valset_dir"):
        folder = getattr(args, name)
        _require(folder is None or Path(folder).is_dir(), f"--{name}: '{folder}' is not an existing folder")
    _require(args.pwc_weights is None or Path(args.pwc_weights).is_file(),
             f"--pwc_weights: '{args.pwc_weights}' is not an existing file")
    for name, minimum in (("epochs", 1), ("batch_size", 1), ("train_length", 2), ("patch_size", 8),
                          ("patches_per_epoch", 1), ("print_every", 1), ("num_workers", 0),
                          ("val_max_frames", 1), ("num_channels", 1), ("num_resblocks", 0), ("seed", 0)):
        _require(getattr(args, name) >= minimum, f"--{name} must be at least {minimum}, got {getattr(args, name)}")
    _require(math.isfinite(args.lr) and args.lr > 0, f"--lr must be a positive number, got {args.lr}")
    _require(math.isfinite(args.gamma) and args.gamma > 0, f"--gamma must be a positive number, got {args.gamma}")
    milestones = list(args.milestones)
    _require(all(m >= 1 for m in milestones) and milestones == sorted(set(milestones)),
             f"--milestones must be positive epochs in increasing order, got {' '.join(map(str, milestones))}")
    if args.distill is None:
        args.distill = args.model == "bdc_flow"
    _require(args.distill_start >= 0, f"--distill_start must be at least 0, got {args.distill_start}")
    for name in ("distill_weight", "distill_lr"):
        value = getattr(args, name)
        _require(math.isfinite(value) and value > 0, f"--{name} must be a positive number, got {value}")
    _require(math.isfinite(args.distill_norm_weight) and args.distill_norm_weight >= 0,
             f"--distill_norm_weight must be a number of at least 0, got {args.distill_norm_weight}")
    _require(args.student_init == "default" or args.pwc_weights is None,
             f"--student_init {args.student_init} initialises a student without weights; drop it or --pwc_weights")
    if args.noise_ival is None:
        args.noise_ival = list(DEFAULT_NOISE_IVAL.get(args.model, DEFAULT_NOISE_IVAL["bdc_2_unify"]))
    parse_noise_ival(args.noise_ival, "--noise_ival")
    parse_sigma(args.val_noiseL, "--val_noiseL")
    if args.log_dir is None:
        args.log_dir = "logs/builtin" if args.builtin else "logs/stbn"
    _require(not Path(args.log_dir).is_file(), f"--log_dir: '{args.log_dir}' is a file, not a folder")


def resolve_flow_source(flow: str, pwc_weights_known: bool) -> str:
    """The flow actually used: PWC-Net needs weights; `auto` falls back to DIS without them."""
    if flow == "pwc" and not pwc_weights_known:
        raise UserError("--flow pwc needs PWC-Net weights: pass --pwc_weights PATH "
                        "(the authors' network-default file or an STBN checkpoint)")
    if flow == "auto":
        return "pwc" if pwc_weights_known else "dis"
    return flow


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed torch (CPU + CUDA), numpy and random from (seed, epoch, rank); epoch 0 = initial weights.

    Crops, noise and shuffling of an epoch depend only on these three numbers, so resuming at
    epoch N reproduces an uninterrupted run, and every rank draws different clips and noise.
    """
    value = (seed * 1_000_003 + epoch * 7919 + rank) % (2 ** 32)
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def compute_loss(model: nn.Module, seqn: torch.Tensor, noise_map: torch.Tensor, sigma: torch.Tensor,
                 amp: bool = False, distillation: FlowDistillation | None = None
                 ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Forward one noisy batch and return `(loss terms, network output (N,T,9,H,W) in float32)`.

    The terms are summed into the loss that is back-propagated: the likelihood (always in
    float32) and, when `distillation` is given, the flow-distillation term 'flow'.
    """
    with torch.autocast(device_type=seqn.device.type, dtype=torch.bfloat16, enabled=amp):
        out = model(seqn, noise_map)[0]
    out = out.float()
    terms = {"loglike": loglike_loss(out, seqn, sigma)}
    if distillation is not None:
        terms["flow"] = distillation.loss(seqn, out)
    return terms, out


def batch_psnr(images: torch.Tensor, clean: torch.Tensor) -> float:
    """Mean over clips of the official per-frame PSNR, images clamped to [0, 1] first (logging only)."""
    images = images.detach().clamp(0, 1).cpu()
    clean = clean.cpu()
    return float(np.mean([sequence_psnr(images[n], clean[n]) for n in range(images.shape[0])]))


def load_train_dataset(args: argparse.Namespace) -> TrainClipDataset:
    """Official training clips from --trainset_dir, or from a built-in clip's training part."""
    options = dict(train_length=args.train_length, patch_size=args.patch_size,
                   patches_per_epoch=args.patches_per_epoch, augment=args.augment)
    if args.builtin:
        train_frames, _ = builtin_split(args.builtin)
        return TrainClipDataset.from_sequences([np.ascontiguousarray(train_frames.transpose(0, 3, 1, 2))], **options)
    return TrainClipDataset(args.trainset_dir, **options)


def load_val_sequences(args: argparse.Namespace) -> Iterable[tuple[str, torch.Tensor]]:
    """(name, clean float (T,3,H,W)) validation sequences; empty when there is no validation set."""
    if args.builtin:
        _, eval_frames = builtin_split(args.builtin)
        clip = torch.from_numpy(eval_frames[:args.val_max_frames]).permute(0, 3, 1, 2).float().div(255)
        return [(args.builtin, clip)]
    if args.valset_dir:
        return EvalSequenceDataset(args.valset_dir, max_num_fr_per_seq=args.val_max_frames)
    return []


@torch.no_grad()
def validate(model: nn.Module, sequences: Iterable[tuple[str, torch.Tensor]], sigma: float,
             device: torch.device) -> float | None:
    """Mean over sequences of the per-frame PSNR of the posterior mean (official test protocol).

    Noise is seeded per sequence (`add_test_noise`), so epochs are compared on the same noise.
    """
    was_training = model.training
    model.eval()
    scores = []
    for _, clean in sequences:
        noisy = add_test_noise(clean, sigma).to(device)
        denoised = denoise_sequence(model, noisy, sigma)
        scores.append(sequence_psnr(denoised.float().cpu(), clean))
    model.train(was_training)
    return float(np.mean(scores)) if scores else None


# Arguments that define the trained variant: a resumed run must keep them (default: older runs).
VARIANT_ARGS = {"align": "nearest", "no_bsa": False, "no_srfe": False, "distill": False, "teacher": "pwc"}


def _check_resume_variant(args: argparse.Namespace, resume: dict, log_dir: Path) -> None:
    """Refuse to continue a run in `log_dir` as another variant (weights or optimizer would not fit)."""
    saved = resume.get("args", {})
    for name, default in VARIANT_ARGS.items():
        if name == "teacher" and not args.distill:
            continue
        before, now = saved.get(name, default), getattr(args, name)
        _require(before == now, f"--{name}: the run in '{log_dir}' was trained with {name}={before}, not {now}; "
                                "resume it with the same options or choose another --log_dir")


def _build_model(args: argparse.Namespace, resume: dict | None, ctx: DistContext) -> tuple[nn.Module, str]:
    """The network (ablation variant of the arguments) with its weights, resumed or fresh, and its
    flow source. PWC-Net is frozen unless it is the distillation's student, whose resumed weights
    are kept (--pwc_weights only initialises a fresh run's student)."""
    seed_epoch(args.seed, 0, 0)  # same initial weights on every rank and every rerun
    model = build_model(args.model, img_channels=3, num_resblocks=args.num_resblocks,
                        num_channels=args.num_channels, **variant_options(vars(args)))
    if args.distill and args.student_init == "he" and resume is None:
        he_init_(model.pwcnet)
    pwc_known = False
    if resume is not None:
        load_model_weights(model, resume, source="the checkpoint being resumed")
        pwc_known = bool(pwc_weights_trained(resume))  # an authors'-format file: its own PWC-Net
    if args.pwc_weights and not (resume is not None and args.distill):
        load_pwc_weights(model.pwcnet, args.pwc_weights)
        pwc_known = True
    # While distilling, --flow pwc aligns with the student as it learns (as the official bdc_flow).
    flow_source = resolve_flow_source(args.flow, pwc_known or (args.distill and args.flow == "pwc"))
    model.set_flow_source(flow_source)
    model.pwcnet.requires_grad_(bool(args.distill))
    return model.to(ctx.device), flow_source


def _build_distillation(args: argparse.Namespace, model: nn.Module, resume: dict | None,
                        device: torch.device) -> FlowDistillation | None:
    """The flow distillation of `model.pwcnet` (None when off). The 'pwc' teacher is the initial
    student: copied from it on a fresh run, restored from the checkpoint on resume."""
    if not args.distill:
        return None
    teacher_pwc = None
    if args.teacher == "pwc":
        if resume is not None:
            _require(isinstance(resume.get(TEACHER_KEY), dict),
                     f"--teacher pwc: the checkpoint being resumed holds no '{TEACHER_KEY}' weights")
            teacher_pwc = PWCNet()
            teacher_pwc.load_state_dict(resume[TEACHER_KEY])
            teacher_pwc = teacher_pwc.to(device)
        else:
            _require(args.pwc_weights is not None,
                     "--teacher pwc needs the initial PWC-Net weights (--pwc_weights PATH); "
                     "--teacher dis trains a student from random weights")
            teacher_pwc = FlowDistillation.frozen_copy(model.pwcnet)
    return FlowDistillation(model.pwcnet, args.teacher, teacher_pwc, args.distill_weight, args.distill_start,
                            args.distill_norm_weight)


def _find_resume(log_dir: Path, ctx: DistContext, log) -> tuple[Path | None, int]:
    """Rank 0's newest complete checkpoint and its epoch, shared with every rank (rank 0 first
    deletes the temp files of saves that a kill interrupted)."""
    path = None
    if ctx.is_main:
        stale = remove_temp_files(log_dir)
        if stale:
            log.info(f"removed {len(stale)} temp file(s) left by an interrupted save: "
                     + ", ".join(p.name for p in stale))
        path = latest_checkpoint(log_dir)
    path = broadcast_object(ctx, path)
    return path, (int(CHECKPOINT_NAME.match(path.name).group(1)) if path else 0)


def _checkpoint_state(model: nn.Module, optimizer, scheduler, args: argparse.Namespace, epoch: int,
                      flow_source: str, history: list[dict],
                      distillation: FlowDistillation | None = None) -> dict[str, Any]:
    """Official layout (`module.` keys) plus what resuming and the evaluation scripts need
    (and the distillation teacher's weights, a key the authors' scripts ignore)."""
    state = {"args": {**vars(args), "epoch": epoch, "flow_source": flow_source},
             "state_dict": add_module_prefix(model.state_dict()),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "history": history}
    teacher = distillation.teacher_state() if distillation is not None else None
    if teacher is not None:
        state[TEACHER_KEY] = teacher
    return state


class _NonFiniteGuard:
    """Counts skipped non-finite steps and says when a run of them means the training diverged."""

    def __init__(self, limit: int = MAX_NONFINITE_IN_A_ROW) -> None:
        self.limit, self.in_a_row, self.total = limit, 0, 0

    def record(self, finite: bool) -> bool:
        """Note one step; True when `limit` non-finite steps came in a row."""
        self.in_a_row = 0 if finite else self.in_a_row + 1
        self.total += 0 if finite else 1
        return self.in_a_row >= self.limit


def _train_step(model: nn.Module, optimizer, params: list[nn.Parameter], clean: torch.Tensor,
                noise_ival: list[float], ctx: DistContext, amp: bool,
                distillation: FlowDistillation | None = None):
    """One optimisation step. Returns (finite, loss value, output, noisy, sigma); skips non-finite steps.

    All ranks agree on skipping (an all-reduce of the flag) so DDP never waits for a missing backward.
    `distillation` (when its loss is on) adds the flow term; DDP leaves its student to us, so the
    student's gradients are averaged over the ranks here.
    """
    sigma = sample_train_sigma(clean.shape[0], noise_ival, device=ctx.device)
    seqn, noise_map = add_train_noise(clean, sigma)
    terms, out = compute_loss(model, seqn, noise_map, sigma.view(-1), amp, distillation)
    loss = sum(terms.values())
    optimizer.zero_grad(set_to_none=True)
    finite = all_ranks_true(ctx, bool(torch.isfinite(loss)))
    if finite:
        loss.backward()
        if distillation is not None:
            average_gradients(ctx, distillation.student.parameters())
        grad_norm = nn.utils.clip_grad_norm_(params, GRAD_CLIP_NORM)
        finite = bool(torch.isfinite(grad_norm))  # gradients are all-reduced: same on all ranks
        if finite:
            optimizer.step()
    return finite, float(loss.detach()), out.detach(), seqn, sigma


def _run_epoch(model: nn.Module, loader: DataLoader, optimizer, params: list[nn.Parameter],
               args: argparse.Namespace, noise_ival: list[float], epoch: int, ctx: DistContext,
               amp: bool, guard: _NonFiniteGuard, log, board: TensorBoardSink,
               distillation: FlowDistillation | None = None) -> dict[str, float]:
    """Train one epoch; returns its mean loss, skipped steps and throughput."""
    model.train()
    losses: list[float] = []
    window: list[float] = []
    skipped_before = guard.total
    frames_per_step = args.batch_size * args.train_length * ctx.world_size
    start = time.perf_counter()
    bar = tqdm(total=len(loader), desc=f"epoch {epoch}/{args.epochs}", unit="it", file=sys.stderr,
               disable=not ctx.is_main, dynamic_ncols=True, leave=False)
    for iteration, clips in enumerate(loader, start=1):
        clean = clips.to(ctx.device, non_blocking=True).float().div_(255)
        step = (epoch - 1) * len(loader) + iteration
        distill_now = distillation if distillation is not None and distillation.active(step) else None
        finite, loss, out, seqn, sigma = _train_step(model, optimizer, params, clean, noise_ival, ctx, amp,
                                                     distill_now)
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
                psnr_post = batch_psnr(posterior_mean(out, seqn, sigma.view(-1)), clean)
                psnr_mean = batch_psnr(out[:, :, :3], clean)
            log.info(f"epoch {epoch} iter {iteration}/{len(loader)} loss {np.mean(window):.4f} "
                     f"PSNR_train {psnr_post:.2f} PSNR_train_m {psnr_mean:.2f} "
                     f"lr {optimizer.param_groups[0]['lr']:.3g} skipped {guard.total - skipped_before}")
            board.scalars({"train/loss": float(np.mean(window)), "train/psnr": psnr_post,
                           "train/psnr_mean": psnr_mean}, step)
            window.clear()
    bar.close()
    seconds = time.perf_counter() - start
    return {"loss": float(np.mean(losses)) if losses else float("nan"),
            "nonfinite_steps": guard.total - skipped_before, "seconds": seconds,
            "frames_per_s": len(loader) * frames_per_step / max(seconds, 1e-9)}


def _make_loader(dataset: TrainClipDataset, args: argparse.Namespace, ctx: DistContext):
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


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Run (or resume, or finish) a training; returns the trained model, history and paths.

    Reruns with the same `log_dir` continue from the newest complete `ckpt_e{N}.pth`. Under
    torchrun each process trains on its shard; rank 0 validates, logs and writes checkpoints.
    """
    validate_args(args)
    noise_ival = parse_noise_ival(args.noise_ival, "--noise_ival")
    val_sigma = parse_sigma(args.val_noiseL, "--val_noiseL") / 255.0
    log_dir = Path(args.log_dir)
    # Bad training data fails here, before anything is written to log_dir.
    train_data, val_sequences = load_train_dataset(args), load_val_sequences(args)
    ctx = setup_distributed(args.device)
    log = None
    try:
        if ctx.is_main:
            _make_log_dir(log_dir)
        barrier(ctx)
        log = setup_run_logger(log_dir, enabled=ctx.is_main)
        return _train(args, ctx, log, log_dir, noise_ival, val_sigma, train_data,
                      val_sequences if ctx.is_main else [])
    finally:
        if log is not None:
            close_run_logger(log)
        teardown_distributed(ctx)


def _make_log_dir(log_dir: Path) -> None:
    try:
        log_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--log_dir: cannot create '{log_dir}': {exc.strerror or exc}") from None


def _train(args: argparse.Namespace, ctx: DistContext, log, log_dir: Path, noise_ival: list[float],
           val_sigma: float, train_data: TrainClipDataset,
           val_sequences: Iterable[tuple[str, torch.Tensor]]) -> dict[str, Any]:
    amp = args.amp and ctx.device.type == "cuda"
    if args.amp and not amp:
        warn("--amp needs a CUDA device; training in float32")
    if ctx.device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    resume_path, start_epoch = _find_resume(log_dir, ctx, log)
    resume = load_checkpoint(resume_path, map_location="cpu") if resume_path else None
    history: list[dict] = list(resume.get("history", [])) if resume else []
    summary = {"log_dir": log_dir, "history": history, "last_checkpoint": resume_path,
               "start_epoch": start_epoch, "nonfinite_steps": 0}
    if start_epoch >= args.epochs:
        log.info(f"training already finished: '{resume_path}' is epoch {start_epoch} of {args.epochs}; "
                 "nothing to do (raise --epochs to train longer)")
        model, summary["flow_source"] = _build_model(args, resume, ctx)
        return {**summary, "model": model}
    if resume is not None:
        _check_resume_variant(args, resume, log_dir)
    model, flow_source = _build_model(args, resume, ctx)
    if args.flow == "auto" and flow_source == "dis":
        log.info("no PWC-Net weights given (--pwc_weights): using OpenCV DIS optical flow instead")
    distillation = _build_distillation(args, model, resume, ctx.device)
    groups = model.trainable_parameters()
    if distillation is not None:  # before the scheduler and the resume, so both know this group
        groups.append({"params": list(model.pwcnet.parameters()), "lr": args.distill_lr})
    optimizer = torch.optim.Adam(groups, lr=args.lr)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=args.milestones, gamma=args.gamma)
    if resume is not None:
        optimizer.load_state_dict(resume["optimizer"])
        scheduler.load_state_dict(resume["scheduler"])
        log.info(f"resuming from '{resume_path}' (epoch {start_epoch} of {args.epochs} done)")
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if ctx.distributed and distillation is not None:  # the student is trained outside DDP's forward
        DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            model, [f"pwcnet.{name}" for name, _ in model.pwcnet.named_parameters()])
    net = (DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None,
                                   broadcast_buffers=False) if ctx.distributed else model)
    loader, sampler = _make_loader(train_data, args, ctx)
    log.info(f"training {args.model} on {ctx.device} x{ctx.world_size}: flow {flow_source}, "
             f"{len(loader)} iterations/epoch, epochs {start_epoch + 1}..{args.epochs}, log_dir '{log_dir}'")
    board = TensorBoardSink(log_dir, enabled=ctx.is_main)
    guard = _NonFiniteGuard()
    try:
        for epoch in range(start_epoch + 1, args.epochs + 1):
            seed_epoch(args.seed, epoch, ctx.rank)
            if sampler is not None:
                sampler.set_epoch(epoch)
            lr = optimizer.param_groups[0]["lr"]
            stats = _run_epoch(net, loader, optimizer, params, args, noise_ival, epoch, ctx, amp, guard,
                               log, board, distillation)
            scheduler.step()
            if ctx.is_main:
                val_psnr = validate(model, val_sequences, val_sigma, ctx.device)
                history.append({"epoch": epoch, "lr": lr, **stats, "val_psnr": val_psnr})
                path = checkpoint_path(log_dir, epoch)
                save_checkpoint(path, _checkpoint_state(model, optimizer, scheduler, args, epoch,
                                                        flow_source, history, distillation))
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
            barrier(ctx)
    finally:
        board.close()
    summary["nonfinite_steps"] = guard.total
    return {**summary, "model": model, "flow_source": flow_source}


def main(argv: list[str] | None = None) -> int:
    """Entry point of `sRGB_train_bsn.py`."""
    train(build_arg_parser().parse_args(argv))
    return 0
