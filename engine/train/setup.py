"""What a training run starts from and writes: initial or resumed model, flow source,
distillation, the newest checkpoint to resume, and the checkpoint contents.

A run's variant is its `StbnConfig` (engine/train/args.py `model_config_from_args`); the checkpoint
stores it beside the official keys ('args', 'state_dict', 'optimizer', 'scheduler'), so the
evaluation rebuilds it and a resumed run must keep it.
"""
from __future__ import annotations

import argparse
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.inference.loading import (
    add_module_prefix,
    checkpoint_config,
    load_model_weights,
    load_pwc_weights,
    pwc_weights_trained,
    restore_unused_pwc,
    without_unused_pwc,
)
from engine.train.args import model_config_from_args, require
from engine.train.distill import TEACHER_KEY, FlowDistillation, he_init_
from engine.train.distributed import DistContext, broadcast_object
from models import StbnConfig, build_model
from models.pwc import PWCNet
from utils.atomic import remove_temp_files
from utils.checkpoint import CHECKPOINT_NAME, checkpoint_candidates, load_checkpoint
from utils.errors import UserError, warn

# What a checkpoint needs to continue a training.
RESUME_KEYS = ("state_dict", "optimizer", "scheduler")
# Training options that must not change when a run resumes (default: runs that did not record them).
TRAINING_ARGS = {"distill": False, "teacher": "pwc"}
# Config fields a resumed run must keep -> the option that sets them.
CONFIG_OPTIONS = {"num_channels": "--num_channels", "num_resblocks": "--num_resblocks", "noise_map": "--model",
                  "align": "--align", "bsa": "--no_bsa", "direction_fusion": "--direction_fusion",
                  "head_outputs": "--raw_loss"}


def seed_epoch(seed: int, epoch: int, rank: int) -> None:
    """Seed torch (CPU + CUDA), numpy and random from (seed, epoch, rank); epoch 0 = initial weights.

    Crops, noise and shuffling of an epoch depend only on these three numbers, so resuming at
    epoch N reproduces an uninterrupted run, and every rank draws different clips and noise.
    """
    value = (seed * 1_000_003 + epoch * 7919 + rank) % (2 ** 32)
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


def resolve_flow_source(flow: str, pwc_weights_known: bool) -> str:
    """The flow actually used: PWC-Net needs weights; `auto` falls back to DIS without them."""
    if flow == "pwc" and not pwc_weights_known:
        raise UserError("--flow pwc needs PWC-Net weights: pass --pwc_weights PATH "
                        "(the authors' network-default file or an STBN checkpoint)")
    if flow == "auto":
        return "pwc" if pwc_weights_known else "dis"
    return flow


def require_same_variant(args: argparse.Namespace, checkpoint: dict, what: str, advice: str) -> None:
    """One-line `UserError` when `checkpoint`'s model config differs from the command line's in a
    field that changes the weights' shapes or meaning (`CONFIG_OPTIONS`)."""
    now = model_config_from_args(args, "pwc")
    before = checkpoint_config(checkpoint, now)
    for name, option in CONFIG_OPTIONS.items():
        old, new = getattr(before, name), getattr(now, name)
        require(old == new, f"{option}: {what} was trained with {name}={old}, not {new}; {advice}")


def check_resume_variant(args: argparse.Namespace, resume: dict, log_dir: Path) -> None:
    """Refuse to continue a run in `log_dir` as another variant (weights or optimizer would not fit)."""
    require_same_variant(args, resume, f"the run in '{log_dir}'",
                         "resume it with the same options or choose another --log_dir")
    saved = resume.get("args") or {}
    if "lr" in saved and saved["lr"] != args.lr:
        # The optimizer and its schedule continue from the checkpoint: a new rate would be ignored.
        raise UserError(f"--lr: the run in '{log_dir}' was trained with lr={saved['lr']:g}, not {args.lr:g}; "
                        "resuming continues its optimizer and schedule, so a new rate would be ignored: resume "
                        f"with --lr {saved['lr']:g} or choose another --log_dir")
    for name, default in TRAINING_ARGS.items():
        if name == "teacher" and not args.distill:
            continue
        old, new = saved.get(name, default), getattr(args, name)
        require(old == new, f"--{name}: the run in '{log_dir}' was trained with {name}={old}, not {new}; "
                             "resume it with the same options or choose another --log_dir")


def build_training_model(args: argparse.Namespace, resume: dict | None, device: torch.device) -> nn.Module:
    """The network of the arguments' config with its weights, resumed, started from --init_weights
    (a new run: fresh optimizer and schedule) or fresh, aligning with the resolved flow source
    (`model.config.flow`). PWC-Net is frozen unless it is the distillation's
    student, whose resumed weights are kept (--pwc_weights only initialises a fresh run's student).
    A resumed authors'-format file aligns with its own PWC-Net."""
    pwc_known = bool(args.pwc_weights) or (resume is not None and bool(pwc_weights_trained(resume)))
    # While distilling, --flow pwc aligns with the student as it learns (as the official bdc_flow).
    flow = resolve_flow_source(args.flow, pwc_known or (args.distill and args.flow == "pwc"))
    config: StbnConfig = model_config_from_args(args, flow)
    seed_epoch(args.seed, 0, 0)  # same initial weights on every rank and every rerun
    model = build_model(config)
    if args.distill and args.student_init == "he" and resume is None:
        he_init_(model.pwcnet)
    if resume is not None:
        load_model_weights(model, restore_unused_pwc(resume, model), source="the checkpoint being resumed")
    elif getattr(args, "init_weights", None):
        start = load_checkpoint(args.init_weights, map_location="cpu")
        require_same_variant(args, start, f"--init_weights '{args.init_weights}'",
                             "give the options it was trained with (export_denoiser keeps them in the file)")
        load_model_weights(model, restore_unused_pwc(start, model), source=f"--init_weights '{args.init_weights}'")
    if args.pwc_weights and not (resume is not None and args.distill):
        load_pwc_weights(model.pwcnet, args.pwc_weights)
    model.pwcnet.requires_grad_(bool(args.distill))
    return model.to(device)


def build_distillation(args: argparse.Namespace, model: nn.Module, resume: dict | None,
                        device: torch.device) -> FlowDistillation | None:
    """The flow distillation of `model.pwcnet` (None when off). The 'pwc' teacher is the initial
    student: copied from it on a fresh run, restored from the checkpoint on resume."""
    if not args.distill:
        return None
    teacher_pwc = None
    if args.teacher == "pwc":
        if resume is not None:
            require(isinstance(resume.get(TEACHER_KEY), dict),
                     f"--teacher pwc: the checkpoint being resumed holds no '{TEACHER_KEY}' weights")
            teacher_pwc = PWCNet()
            teacher_pwc.load_state_dict(resume[TEACHER_KEY])
            teacher_pwc = teacher_pwc.to(device)
        else:
            require(args.pwc_weights is not None,
                     "--teacher pwc needs the initial PWC-Net weights (--pwc_weights PATH); "
                     "--teacher dis trains a student from random weights")
            teacher_pwc = FlowDistillation.frozen_copy(model.pwcnet)
    return FlowDistillation(model.pwcnet, args.teacher, teacher_pwc, args.distill_weight, args.distill_start,
                            args.distill_norm_weight)


def find_resume(log_dir: Path, ctx: DistContext, log: Any) -> tuple[Path | None, int, dict | None]:
    """The newest resumable checkpoint of `log_dir`: (path, epoch, loaded checkpoint), or Nones and 0.

    Rank 0 first deletes the temp files of saves that a kill interrupted, and skips, with a note,
    a `ckpt_eN.pth` that holds weights only (no optimizer state: not written by a training);
    every rank then loads the chosen file.
    """
    path, checkpoint = None, None
    if ctx.is_main:
        stale = remove_temp_files(log_dir)
        if stale:
            log.info(f"removed {len(stale)} temp file(s) left by an interrupted save: "
                     + ", ".join(p.name for p in stale))
        for candidate in checkpoint_candidates(log_dir):
            checkpoint = load_checkpoint(candidate, map_location="cpu")
            if all(key in checkpoint for key in RESUME_KEYS):
                path = candidate
                break
            warn(f"not resuming from '{candidate}': it holds weights only (no optimizer state), not a "
                 "training checkpoint; rename it to keep it out of the way")
            checkpoint = None
    path = broadcast_object(ctx, path)
    if path is not None and checkpoint is None:
        checkpoint = load_checkpoint(path, map_location="cpu")
    return path, (int(CHECKPOINT_NAME.match(path.name).group(1)) if path else 0), checkpoint


def training_state_dict(model: nn.Module, distilling: bool) -> dict[str, Any]:
    """The weights a checkpoint keeps (`module.` keys): without PWC-Net when the run aligns with DIS
    or zero flow and does not distill, since those 9.4M parameters keep their random initial values
    and are never used (a demo checkpoint of a 16-channel model shrinks from 44 MB to 6.5 MB); resuming
    rebuilds them from the seed (`restore_unused_pwc`)."""
    state = add_module_prefix(model.state_dict())
    return state if distilling else without_unused_pwc(state, model.config.flow)


def checkpoint_state(model: nn.Module, optimizer, scheduler, args: argparse.Namespace, epoch: int,
                     history: list[dict], distillation: FlowDistillation | None = None) -> dict[str, Any]:
    """Official layout (`module.` keys) plus what resuming and the evaluation scripts need: the
    model config, history (and the distillation teacher's weights), keys the authors' scripts ignore."""
    state = {"args": {**vars(args), "epoch": epoch, "flow_source": model.config.flow},
             "config": model.config.to_dict(),
             "state_dict": training_state_dict(model, bool(args.distill)),
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "history": history}
    teacher = distillation.teacher_state() if distillation is not None else None
    if teacher is not None:
        state[TEACHER_KEY] = teacher
    return state
