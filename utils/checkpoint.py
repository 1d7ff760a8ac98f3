"""Checkpoints in the official STBN format, written so that a crash never leaves a broken file.

Format (the authors' training code, ZKCCZ/STBN): a dict `{'args', 'state_dict', 'optimizer',
'scheduler'}` saved as `<log_dir>/ckpt_e{epoch}.pth`. The official training wraps the model in
`torch.nn.DataParallel`, so every `state_dict` key starts with `module.`; we write the same
prefix so that the official test script loads our files, and accept prefixed or bare keys when
loading. Extra keys (e.g. 'epoch', 'rng_state') are ignored by the official code.

Files are read with `torch.load(weights_only=True)`: only tensors and plain Python values
(dict, list, str, numbers) may be stored, which the official files satisfy.
"""
from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from utils.atomic import atomic_path
from utils.errors import UserError, warn

MODULE_PREFIX = "module."
CHECKPOINT_NAME = re.compile(r"^ckpt_e(\d+)\.pth$")
_NAMES_SHOWN = 3
# How torch.save files begin: a zip archive (PyTorch >= 1.6) or a pickle (older releases).
_TORCH_MAGIC = (b"PK\x03\x04", b"\x80")


def checkpoint_path(log_dir: str | os.PathLike, epoch: int) -> Path:
    """`<log_dir>/ckpt_e{epoch}.pth`, the official name that resuming looks for."""
    return Path(log_dir) / f"ckpt_e{epoch}.pth"


class _RecordingWriter:
    """A file that remembers the exception its `write` raised. torch.save's zip writer turns any
    failing write (a full disk, Ctrl-C) into `RuntimeError: ... unexpected pos`; the recorded
    exception is the real one, re-raised instead (so ENOSPC reads as such, Ctrl-C exits 130)."""

    def __init__(self, file: Any) -> None:
        self.file = file
        self.error: BaseException | None = None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except BaseException as exc:
            self.error = exc
            raise

    def flush(self) -> None:
        self.file.flush()


def _open_for_writing(path: Path) -> Any:
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb")


def save_checkpoint(path: str | os.PathLike, state: Mapping[str, Any]) -> None:
    """Write `state` atomically: temp file in the same folder, flush + fsync, then `os.replace`."""
    path = Path(path)
    with atomic_path(path, "checkpoint") as tmp:
        path.parent.mkdir(parents=True, exist_ok=True)
        with _open_for_writing(tmp) as f:
            writer = _RecordingWriter(f)
            try:
                torch.save(dict(state), writer)
            except RuntimeError:
                if writer.error is not None:
                    raise writer.error from None
                raise
            f.flush()
            os.fsync(f.fileno())
    _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable (POSIX only; Windows cannot open folders)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def load_checkpoint(path: str | os.PathLike, map_location: Any = "cpu") -> dict:
    """Load a checkpoint (or a bare state dict) file; `UserError` if missing, truncated or foreign."""
    path = Path(path)
    if not path.is_file():
        what = ("is a folder, not a checkpoint file" if path.is_dir() else
                "is not a regular file" if path.exists() else "does not exist")
        raise UserError(f"checkpoint '{path}' {what}")
    if not os.access(path, os.R_OK):
        raise UserError(f"cannot read checkpoint '{path}': Permission denied")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        if "Weights only load failed" in str(exc):
            raise UserError(f"checkpoint '{path}' stores Python objects other than tensors and plain "
                            "values; refusing to unpickle it") from None
        raise UserError(f"'{path}' is not a PyTorch checkpoint (or it is damaged)") from None
    except Exception as exc:  # a damaged archive surfaces as RuntimeError, KeyError, EOFError...
        raise UserError(_unreadable(path, exc)) from None
    if not isinstance(data, dict):
        raise UserError(f"'{path}' holds a {type(data).__name__}, not a checkpoint dict")
    return data


def _unreadable(path: Path, exc: Exception) -> str:
    """Why `torch.load` failed, in one line: a cut or damaged torch file, or no torch file at all."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(_TORCH_MAGIC):
        detail = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        return (f"checkpoint '{path}' is truncated or damaged ({detail}); was its download or "
                "writing interrupted?")
    return f"'{path}' is not a PyTorch checkpoint (not a file written by torch.save)"


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


def checkpoint_candidates(log_dir: str | os.PathLike) -> list[Path]:
    """The complete `ckpt_e{N}.pth` files of `log_dir`, highest N first.

    Other `.pth` files and our temp files are ignored; a damaged candidate (no zip directory,
    i.e. not a finished `torch.save`) is skipped with a warning.
    """
    folder = Path(log_dir)
    if not folder.is_dir():
        return []
    candidates = sorted(((int(m.group(1)), p) for p in folder.iterdir()
                         if (m := CHECKPOINT_NAME.match(p.name)) and p.is_file()), reverse=True)
    complete = []
    for _, path in candidates:
        if zipfile.is_zipfile(path):
            complete.append(path)
        else:
            warn(f"skipping incomplete checkpoint '{path}'")
    return complete


def latest_checkpoint(log_dir: str | os.PathLike) -> Path | None:
    """The `ckpt_e{N}.pth` with the highest N that is a complete file, or None."""
    candidates = checkpoint_candidates(log_dir)
    return candidates[0] if candidates else None
