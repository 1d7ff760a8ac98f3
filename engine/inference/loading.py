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
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models import StbnConfig, build_model, model_config
from models.alignment import ALIGN_MODES
from models.pwc import PWCNet
from utils.checkpoint import load_checkpoint, save_checkpoint
from utils.errors import UserError, warn

DEVICE_CHOICES = ("auto", "cpu", "cuda")
# The small blind model that ships with the repository (README "Default model"): what denoise.py
# uses when no --model_file is given.
DEFAULT_MODEL_FILE = Path(__file__).resolve().parents[2] / "weights" / "stbn_blind_small.pth"
FLOW_CHOICES = ("auto", "pwc", "dis", "zero")
ALIGN_CHOICES = ALIGN_MODES


# ---------------------------------------------------------------------------------------------
# The official format: `module.` keys, PWC-Net inside the state dict, the recorded flow source
# ---------------------------------------------------------------------------------------------

# The official training wraps the model in DataParallel: every state_dict key starts with `module.`.
# We write the same prefix so that the official test script loads our files, and accept both.
MODULE_PREFIX = "module."
_NAMES_SHOWN = 3


def recorded_flow_source(checkpoint: Mapping[str, Any]) -> str | None:
    """How the checkpoint's denoiser was aligned: what our config / training arguments record; 'pwc' for
    an authors'-format file (a 'state_dict' and no recorded flow: their models align with their
    own, real PWC-Net); None for a bare state dict, which records nothing."""
    if "state_dict" not in checkpoint:
        return None
    config, args = checkpoint.get("config"), checkpoint.get("args")
    if isinstance(config, Mapping) and config.get("flow"):
        return config["flow"]
    recorded = args.get("flow_source") if isinstance(args, Mapping) else None
    return recorded or "pwc"


def pwc_weights_trained(checkpoint: Mapping[str, Any]) -> bool | None:
    """Whether the PWC-Net weights inside an STBN checkpoint are trained: True for the authors'
    files, runs aligned with PWC-Net and distillation runs (the student is trained), False for runs
    that aligned with DIS / zero flow (their PWC-Net kept its random initial weights), None for a
    bare state dict (unknown)."""
    source = recorded_flow_source(checkpoint)
    if source is None:
        return None
    args = checkpoint.get("args")
    return source == "pwc" or (isinstance(args, Mapping) and bool(args.get("distill")))


PWC_KEY_PREFIX = "pwcnet."


def without_unused_pwc(state_dict: Mapping[str, Any], flow: str) -> dict:
    """`state_dict` without the PWC-Net weights when the model aligns with another flow (DIS /
    zero): they are its random initial weights, 9.4M parameters that are never used."""
    if flow == "pwc":
        return dict(state_dict)
    return {k: v for k, v in state_dict.items() if not k.removeprefix(MODULE_PREFIX).startswith(PWC_KEY_PREFIX)}


def holds_pwc_weights(checkpoint: Mapping[str, Any]) -> bool:
    """Whether the checkpoint's state dict has PWC-Net weights at all (`without_unused_pwc` drops them)."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    return isinstance(state, Mapping) and any(k.startswith(PWC_KEY_PREFIX) for k in strip_module_prefix(state))


def restore_unused_pwc(checkpoint: Mapping[str, Any], model: nn.Module) -> Mapping[str, Any]:
    """A checkpoint saved without its unused PWC-Net weights (`without_unused_pwc`), completed with
    `model`'s own, so that the strict load accepts it; any other checkpoint unchanged."""
    state = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(state, Mapping) or pwc_weights_trained(checkpoint) is not False or holds_pwc_weights(checkpoint):
        return checkpoint
    filled = {**strip_module_prefix(state),
              **{k: v for k, v in model.state_dict().items() if k.startswith(PWC_KEY_PREFIX)}}
    return {**checkpoint, "state_dict": filled}


def strip_module_prefix(state_dict: Mapping[str, Any]) -> dict:
    """Remove the `module.` that DataParallel puts in front of every key (bare keys unchanged)."""
    return {k[len(MODULE_PREFIX):] if k.startswith(MODULE_PREFIX) else k: v for k, v in state_dict.items()}


def add_module_prefix(state_dict: Mapping[str, Any]) -> dict:
    """Put `module.` in front of every key, as the official DataParallel checkpoints have it."""
    return {k if k.startswith(MODULE_PREFIX) else MODULE_PREFIX + k: v for k, v in state_dict.items()}


def extract_state_dict(state_dict_or_ckpt: Mapping[str, Any], source: str = "checkpoint") -> dict:
    """The bare-key model weights from a checkpoint dict or from a state dict itself."""
    state = state_dict_or_ckpt.get("state_dict", state_dict_or_ckpt)
    if not isinstance(state, Mapping) or not any(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{source} holds no model weights (no 'state_dict' and no tensors)")
    return strip_module_prefix(state)


def infer_model_options(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Guess `num_channels`, `num_resblocks` and the noise-map input from weight shapes.

    num_channels = output width of `forward_rnn.head.0`; the shared fusion `concat` holds
    num_resblocks dilated residual units `concat.convs.{i}.body` (the head `d2` only
    num_resblocks // 2, the fallback for `--no_bsa` checkpoints that have no `concat`); the head
    input is frame + hidden (+ noise map), so its extra width tells the released model
    (`noise_map=True`) from `bdc_flow`.
    """
    head = state_dict.get("forward_rnn.head.0.weight")
    last = [k for k in state_dict if re.fullmatch(r"d2\.convs\.\d+\.weight", k)]
    if head is None or not last:
        return {}
    num_channels = int(head.shape[0])
    img_channels = int(state_dict[max(last, key=lambda k: int(k.split(".")[2]))].shape[0]) - 6
    fusion_units = _count_units(state_dict, "concat")
    num_resblocks = fusion_units if fusion_units else 2 * _count_units(state_dict, "d2")
    return {"num_channels": num_channels, "num_resblocks": num_resblocks,
            "noise_map": int(head.shape[1]) - num_channels == 2 * img_channels}


def _count_units(state_dict: Mapping[str, Any], module: str) -> int:
    """Number of dilated residual units `<module>.convs.{i}.body` of a fusion block."""
    pattern = re.escape(module) + r"\.convs\.(\d+)\.body\.0\.weight"
    return len({m.group(1) for k in state_dict if (m := re.fullmatch(pattern, k))})


def _names(keys: list[str]) -> str:
    shown = ", ".join(keys[:_NAMES_SHOWN])
    return shown + (f", ... ({len(keys) - _NAMES_SHOWN} more)" if len(keys) > _NAMES_SHOWN else "")


def _suggestion(found: dict[str, Any], expected: dict[str, Any]) -> str:
    if not found:
        return "; it does not look like an STBN checkpoint"
    hints = [f"--{k} {found[k]}" for k in ("num_resblocks", "num_channels") if found[k] != expected.get(k)]
    if found["noise_map"] != expected.get("noise_map", found["noise_map"]):
        hints.append("--model " + ("stbn" if found["noise_map"] else "bdc_flow"))
    return f"; the checkpoint fits {' '.join(hints)}" if hints else ""


def load_model_weights(model: nn.Module, state_dict_or_ckpt: Mapping[str, Any],
                       source: str = "checkpoint") -> None:
    """Load official (`module.` keys) or bare weights into `model`, strictly.

    On any mismatch raises a one-line `UserError` naming a few missing, unexpected and
    shape-mismatched keys and suggesting the `--num_resblocks` / `--num_channels` / `--model`
    that the checkpoint's shapes imply.
    """
    state = extract_state_dict(state_dict_or_ckpt, source)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}" for k, v in expected.items()
                  if k in state and tuple(state[k].shape) != tuple(v.shape)]
    if missing or unexpected or mismatched:
        parts = [f"{len(keys)} {label} ({_names(keys)})" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("with other shapes", mismatched)) if keys]
        raise UserError(f"{source} does not fit the model: {'; '.join(parts)}"
                        f"{_suggestion(infer_model_options(state), infer_model_options(expected))}")
    bad = next((k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())), None)
    if bad is not None:
        raise UserError(f"{source} holds NaN or inf weights ({bad}): it cannot denoise; use an earlier checkpoint")
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# PWC-Net weight files (the authors' network-default.pytorch, or PWC-Net inside a checkpoint)
# ---------------------------------------------------------------------------------------------


def _official_to_net(key: str) -> str:
    """Authors' weight-file names (`moduleExtractor.moduleOne.0.weight`) -> ours (`net...`)."""
    return key.replace("module", "net")


def _net_to_official(key: str) -> str:
    return key.replace("net", "module")


def _extract_pwc_state(obj: object, expected: set[str]) -> dict[str, torch.Tensor] | None:
    """The PWC tensors from any accepted layout, keyed as `PWCNet.state_dict()`, else None."""
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(k, str) for k in obj):
        return None
    for prefix in ("module.pwcnet.", "pwcnet.", ""):
        picked = {k[len(prefix):]: v for k, v in obj.items() if k.startswith(prefix)}
        for candidate in (picked, {_official_to_net(k): v for k, v in picked.items()}):
            if candidate and set(candidate) == expected:
                return candidate
    return None


def load_pwc_weights(net: PWCNet, path: str | os.PathLike) -> None:
    """Load PWC-Net weights from the authors' `network-default.pytorch` (keys `module*`), a bare
    `PWCNet` state dict, or an STBN checkpoint (keys `module.pwcnet.*` / `pwcnet.*`, optionally
    under `state_dict`). Raises `UserError` for a missing or unreadable file or one holding no
    PWC-Net."""
    data = load_checkpoint(path)
    if pwc_weights_trained(data) is False:
        raise UserError(f"--pwc_weights: '{path}' is an STBN checkpoint trained with "
                        f"{recorded_flow_source(data)} flow; its PWC-Net weights were never trained")
    state = _extract_pwc_state(data, set(net.state_dict()))
    if state is None:
        raise UserError(f"PWC-Net weights '{path}' hold no PWC-Net state dict (expected the authors' "
                        "network-default.pytorch, a PWCNet state dict or an STBN checkpoint)")
    own = net.state_dict()
    wrong = [k for k, v in state.items() if tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        raise UserError(f"PWC-Net weights '{path}': wrong shape for {wrong[0]} "
                        f"({tuple(state[wrong[0]].shape)} instead of {tuple(own[wrong[0]].shape)})")
    net.load_state_dict(state)


def save_pwc_weights(net: PWCNet, path: str | os.PathLike) -> None:
    """Write `net`'s weights atomically in the authors' format (`module*` keys), so that a
    distilled student can be passed back as PWC-Net weights."""
    save_checkpoint(path, {_net_to_official(k): v.detach().cpu() for k, v in net.state_dict().items()})


# ---------------------------------------------------------------------------------------------
# Checkpoint -> configured model
# ---------------------------------------------------------------------------------------------

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


def refuse_training_checkpoint(path: str | os.PathLike, option: str = "--save_model") -> None:
    """`UserError` when `path` holds a resumable training checkpoint (optimizer state): writing
    weights only over it would lose the run's optimizer, scheduler and history."""
    if Path(path).is_file():
        try:
            existing = load_checkpoint(path)
        except UserError:
            return  # not a checkpoint of ours: the atomic write replaces it as any output
        if "optimizer" in existing:
            raise UserError(f"{option} '{path}' is a resumable training checkpoint; writing weights only over "
                            "it would lose its optimizer state and history: choose another path")


def save_denoiser(path: str | os.PathLike, model: nn.Module, args: Mapping[str, Any],
                  extra: Mapping[str, Any] | None = None) -> None:
    """Write `model` as a checkpoint that `load_denoiser` reads: `module.` keys, its config, `args`
    with the flow source, and `extra` entries (e.g. the training history). A model that aligns
    with DIS or zero flow is written without its unused PWC-Net weights (a tenth of the size for
    small models); the authors' test script reads files of PWC-aligned models."""
    state = without_unused_pwc(add_module_prefix(model.state_dict()), model.config.flow)
    save_checkpoint(path, {**(extra or {}), "args": {**args, "flow_source": model.config.flow},
                           "config": model.config.to_dict(), "state_dict": state})
