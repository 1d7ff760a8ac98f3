"""Build a ready-to-run denoiser from a checkpoint: its configuration, weights and flow source.

Shared by the evaluation (`sRGB_test.py`), `denoise.py`, fine-tuning and the training resume, so
all read a checkpoint the same way:
- ours store their `StbnConfig` (key 'config') and rebuild exactly it;
- the authors' release (a 'state_dict' with DataParallel `module.` keys, no config) is the
  configuration the command line describes (the released one by default) with PWC flow;
- a bare state dict is the same, with an unknown flow source (see `choose_flow_source`).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import StbnConfig, build_model, model_config
from models.alignment import ALIGN_MODES
from models.pwc import load_pwc_weights
from utils.checkpoint import (
    add_module_prefix,
    holds_pwc_weights,
    load_checkpoint,
    load_model_weights,
    pwc_weights_trained,
    recorded_flow_source,
    restore_unused_pwc,
    save_checkpoint,
    without_unused_pwc,
)
from utils.errors import UserError, warn

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# The small blind model that ships with the repository (README "Default model"): what denoise.py
# uses when no --model_file is given.
DEFAULT_MODEL_FILE = Path(__file__).resolve().parents[2] / "weights" / "stbn_blind_small.pth"
FLOW_CHOICES = ("auto", "pwc", "dis", "zero")
ALIGN_CHOICES = ALIGN_MODES


def checkpoint_config(checkpoint: Mapping[str, Any], default: StbnConfig) -> StbnConfig:
    """The StbnConfig a checkpoint describes: its stored 'config'; for our checkpoints written
    before configs were stored, `default` with the variant their training arguments record; for
    the authors' files and bare state dicts, `default` (the command line's configuration)."""
    stored = checkpoint.get("config")
    if isinstance(stored, Mapping):
        try:
            return StbnConfig.from_dict(stored)
        except (TypeError, ValueError) as exc:
            raise UserError(f"the checkpoint's model configuration is not readable: {exc}") from None
    args = checkpoint.get("args")
    if not isinstance(args, Mapping) or "flow_source" not in args:
        return default
    return default.replace(align=args.get("align", "nearest"), bsa=not args.get("no_bsa", False),
                           direction_fusion="pixelwise" if args.get("no_srfe") else "srfe")


def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA when available else CPU; asking for CUDA without it is a user error."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise UserError(f"--device: unknown device {name!r}; expected one of {', '.join(DEVICE_CHOICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return torch.device(name)


def choose_flow_source(flow: str, checkpoint: Mapping[str, Any], pwc_weights_given: bool) -> tuple[str, str | None]:
    """(the flow to align with, a note saying why when it is not the obvious choice).

    'auto': PWC-Net when its weights are trained (an authors'-format file, a checkpoint trained
    with PWC flow or by distillation, or --pwc_weights), else the flow the denoiser was trained
    with (DIS / zero); a bare state dict records nothing, so 'auto' takes DIS rather than trusting
    its PWC-Net; a note only where unused PWC-Net weights are in the file. '--flow pwc' is refused
    for a checkpoint known to hold untrained PWC-Net weights and allowed, with a note, for a bare
    state dict.
    """
    trained = True if pwc_weights_given else pwc_weights_trained(checkpoint)
    recorded = recorded_flow_source(checkpoint)
    if flow == "auto":
        if trained:
            return "pwc", None
        if trained is None:
            return "dis", ("a bare state dict does not record whether its PWC-Net weights are trained; "
                           "using DIS flow (--flow pwc aligns with its PWC-Net, --pwc_weights with another)")
        if not holds_pwc_weights(checkpoint):  # saved without them on purpose: nothing to say
            return recorded, None
        return recorded, (f"holds no trained PWC-Net weights (trained with {recorded} flow); using {recorded} "
                          "flow (pass --pwc_weights to use PWC-Net)")
    if flow == "pwc" and trained is False:
        raise UserError(f"--flow pwc: this checkpoint was trained with {recorded} flow and holds no "
                        "trained PWC-Net weights; pass --pwc_weights PATH or use --flow auto")
    if flow == "pwc" and trained is None:
        return "pwc", ("aligning with the PWC-Net weights of a bare state dict, which does not record "
                       "whether they are trained")
    return flow, None


def load_denoiser(model_file: str | os.PathLike, device: torch.device, model: str = "bdc_2_unify",
                  num_resblocks: int = 5, num_channels: int = 64, pwc_weights: str | None = None,
                  flow: str = "auto", align: str | None = None) -> tuple[nn.Module, dict]:
    """(model on `device` in eval mode with the checkpoint's weights, the checkpoint dict).

    The configuration is the checkpoint's own (`checkpoint_config`; `model`, `num_resblocks` and
    `num_channels` describe files that store none); `align` overrides its warp (a test-time
    ablation) and the flow source follows `choose_flow_source`. A checkpoint of another
    configuration raises a one-line `UserError` naming the mismatch and the options that fit.
    """
    if flow not in FLOW_CHOICES:
        raise UserError(f"--flow: unknown flow {flow!r}; expected one of {', '.join(FLOW_CHOICES)}")
    if align is not None and align not in ALIGN_CHOICES:
        raise UserError(f"--align: unknown alignment {align!r}; expected one of {', '.join(ALIGN_CHOICES)}")
    checkpoint = load_checkpoint(model_file)
    config = checkpoint_config(checkpoint, model_config(model, 3, num_resblocks, num_channels))
    source, note = choose_flow_source(flow, checkpoint, bool(pwc_weights))
    if note:
        warn(f"checkpoint '{model_file}': {note}")
    network = build_model(config.replace(flow=source, align=align or config.align))
    load_model_weights(network, restore_unused_pwc(checkpoint, network), source=f"checkpoint '{model_file}'")
    if pwc_weights:
        load_pwc_weights(network.pwcnet, pwc_weights)
    network.requires_grad_(False)
    return network.to(device).eval(), checkpoint


def refuse_training_checkpoint(path: str | os.PathLike) -> None:
    """`UserError` when `path` holds a resumable training checkpoint (optimizer state): writing
    weights only over it would lose the run's optimizer, scheduler and history."""
    if Path(path).is_file():
        try:
            existing = load_checkpoint(path)
        except UserError:
            return  # not a checkpoint of ours: the atomic write replaces it as any output
        if "optimizer" in existing:
            raise UserError(f"--save_model '{path}' is a resumable training checkpoint; writing fine-tuned "
                            "weights over it would lose its optimizer state and history: choose another path")


def save_denoiser(path: str | os.PathLike, model: nn.Module, args: Mapping[str, Any],
                  extra: Mapping[str, Any] | None = None) -> None:
    """Write `model` as a checkpoint that `load_denoiser` reads: `module.` keys, its config, `args`
    with the flow source, and `extra` entries (e.g. the training history). A model that aligns
    with DIS or zero flow is written without its unused PWC-Net weights (a tenth of the size for
    small models); the authors' test script reads files of PWC-aligned models."""
    state = without_unused_pwc(add_module_prefix(model.state_dict()), model.config.flow)
    save_checkpoint(path, {**(extra or {}), "args": {**args, "flow_source": model.config.flow},
                           "config": model.config.to_dict(), "state_dict": state})
