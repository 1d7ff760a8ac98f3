"""Build a ready-to-run denoiser from a checkpoint: device, weights, PWC-Net weights, flow source.

Shared by the evaluation (`sRGB_test.py`) and `denoise.py`, so both accept the same checkpoints:
the authors' release (a dict whose 'state_dict' has DataParallel `module.` keys and whose PWC-Net
weights are the real ones), our training checkpoints (same layout; `args['flow_source']` records
whether the PWC-Net weights are real or training used DIS / zero flow) and bare state dicts.
"""
from __future__ import annotations

import os
from typing import Any, Mapping

import torch
from torch import nn

from models import build_model
from models.pwc import load_pwc_weights
from utils.checkpoint import (add_module_prefix, load_checkpoint, load_model_weights, pwc_weights_trained,
                              recorded_flow_source, save_checkpoint)
from utils.errors import UserError, warn

DEVICE_CHOICES = ("auto", "cpu", "cuda")
FLOW_CHOICES = ("auto", "pwc", "dis", "zero")
ALIGN_CHOICES = ("nearest", "bilinear", "softsplat")


def variant_options(saved_args: Mapping[str, Any] | None, align: str | None = None) -> dict[str, Any]:
    """STBN options of the ablation variant a training recorded in its arguments (`align`,
    `no_bsa`, `no_srfe`); the authors' files record none: the released variant. `align`, when
    given, overrides the recorded warp (a test-time ablation; BSA/SRFE change the weights)."""
    saved = saved_args if isinstance(saved_args, Mapping) else {}
    chosen = align or saved.get("align") or "nearest"
    if chosen not in ALIGN_CHOICES:
        raise UserError(f"--align: unknown alignment {chosen!r}; expected one of {', '.join(ALIGN_CHOICES)}")
    return {"align": chosen, "use_bsa": not saved.get("no_bsa", False),
            "use_srfe": not saved.get("no_srfe", False)}


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
    its PWC-Net. '--flow pwc' is refused for a checkpoint known to hold untrained PWC-Net weights
    and allowed, with a note, for a bare state dict.
    """
    trained = True if pwc_weights_given else pwc_weights_trained(checkpoint)
    recorded = recorded_flow_source(checkpoint)
    if flow == "auto":
        if trained:
            return "pwc", None
        if trained is None:
            return "dis", ("a bare state dict does not record whether its PWC-Net weights are trained; "
                           "using DIS flow (--flow pwc aligns with its PWC-Net, --pwc_weights with another)")
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

    The ablation variant (warp, BSA, SRFE) is the one the checkpoint's arguments record, so a
    variant is evaluated as it was trained; `align` overrides the warp. A checkpoint of another
    configuration raises a one-line `UserError` naming the mismatch and the --num_resblocks /
    --num_channels that fit.
    """
    if flow not in FLOW_CHOICES:
        raise UserError(f"--flow: unknown flow {flow!r}; expected one of {', '.join(FLOW_CHOICES)}")
    checkpoint = load_checkpoint(model_file)
    network = build_model(model, img_channels=3, num_resblocks=num_resblocks, num_channels=num_channels,
                          **variant_options(checkpoint.get("args"), align))
    load_model_weights(network, checkpoint, source=f"checkpoint '{model_file}'")
    if pwc_weights:
        load_pwc_weights(network.pwcnet, pwc_weights)
    source, note = choose_flow_source(flow, checkpoint, bool(pwc_weights))
    if note:
        warn(f"checkpoint '{model_file}': {note}")
    network.set_flow_source(source)
    network.requires_grad_(False)
    return network.to(device).eval(), checkpoint


def save_denoiser(path: str | os.PathLike, model: nn.Module, args: Mapping[str, Any]) -> None:
    """Write `model` as a checkpoint that `load_denoiser`, the training resume and the authors'
    test script read: `module.` keys, plus `args` with the flow source and ablation variant."""
    variant = {"align": model.align_mode, "no_bsa": not model.use_bsa, "no_srfe": not model.use_srfe}
    save_checkpoint(path, {"args": {**args, **variant, "flow_source": model.flow_source},
                           "state_dict": add_module_prefix(model.state_dict())})
