"""Checkpoint files, format-free: written so that a crash never leaves a broken file, read safely.

A checkpoint here is any dict of tensors and plain values saved by `torch.save` as
`<log_dir>/ckpt_e{epoch}.pth` (the official name, which resuming looks for). What the keys mean
(the model's weights, its config, PWC-Net, the flow source) is `engine/inference/loading.py`'s job.

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

from utils.atomic import atomic_path
from utils.errors import UserError, warn

CHECKPOINT_NAME = re.compile(r"^ckpt_e(\d+)\.pth$")
# How torch.save files begin: a zip archive (PyTorch >= 1.6), or torch's legacy format, a pickle
# (protocol 2) of its magic number 0x1950a86a20f9469cfc6c (`_use_new_zipfile_serialization=False`).
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = b"\x80\x02\x8a\nl\xfc\x9cF\xf9 j\xa8P\x19"
_TORCH_MAGIC = (_ZIP_MAGIC, _LEGACY_MAGIC)


def is_torch_file(path: str | os.PathLike) -> bool:
    """Whether `path` begins as a `torch.save` file does (zip or legacy); says nothing of its end."""
    with open(path, "rb") as f:
        return f.read(len(_LEGACY_MAGIC)).startswith(_TORCH_MAGIC)


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
    if not is_torch_file(path):  # a picture, a video, random bytes: not worth unpickling
        raise UserError(f"'{path}' is not a PyTorch checkpoint (not a file written by torch.save)")
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
    damaged = _damaged_record(path)
    if damaged:
        raise UserError(f"checkpoint '{path}' is damaged: its record '{damaged}' fails its checksum (bit rot or "
                        "a bad copy); copy the file again or use another checkpoint")
    return data


def _damaged_record(path: Path) -> str | None:
    """The first record of a zip-format torch file whose CRC-32 does not match (torch.load does not
    check them), else None; legacy-format files carry no checksums."""
    if not zipfile.is_zipfile(path):
        return None
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        return str(exc)


def _unreadable(path: Path, exc: Exception) -> str:
    """Why `torch.load` failed, in one line: a cut or damaged torch file, or no torch file at all."""
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(_TORCH_MAGIC):
        detail = str(exc).split(". ")[0].splitlines()[0] if str(exc) else type(exc).__name__
        return (f"checkpoint '{path}' is truncated or damaged ({detail}); was its download or "
                "writing interrupted?")
    return f"'{path}' is not a PyTorch checkpoint (not a file written by torch.save)"


def checkpoint_candidates(log_dir: str | os.PathLike) -> list[Path]:
    """The complete `ckpt_e{N}.pth` files of `log_dir`, highest N first.

    Other `.pth` files and our temp files are ignored; a damaged candidate (no zip directory,
    i.e. not a finished `torch.save`) is skipped with a warning. Files in torch's legacy format are
    candidates: loading them tells whether they are complete (and refuses, rather than skips, one
    that is not, so that a resumed run never overwrites it).
    """
    folder = Path(log_dir)
    if not folder.is_dir():
        return []
    candidates = sorted(((int(m.group(1)), p) for p in folder.iterdir()
                         if (m := CHECKPOINT_NAME.match(p.name)) and p.is_file()), reverse=True)
    complete = []
    for _, path in candidates:
        if zipfile.is_zipfile(path) or _is_legacy_torch_file(path):
            complete.append(path)
        else:
            warn(f"skipping incomplete checkpoint '{path}'")
    return complete


def _is_legacy_torch_file(path: Path) -> bool:
    """A file in torch's legacy format (no zip directory to check): loading tells if it is whole."""
    with open(path, "rb") as f:
        return f.read(len(_LEGACY_MAGIC)) == _LEGACY_MAGIC


def latest_checkpoint(log_dir: str | os.PathLike) -> Path | None:
    """The `ckpt_e{N}.pth` with the highest N that is a complete file, or None."""
    candidates = checkpoint_candidates(log_dir)
    return candidates[0] if candidates else None
