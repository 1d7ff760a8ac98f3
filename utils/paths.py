"""Path checks that keep a run from writing over what the user gave it to read."""
from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from utils.errors import UserError


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def is_within(path: str | os.PathLike, folder: str | os.PathLike) -> bool:
    """True when `path` is `folder` itself or lies somewhere below it (symbolic links resolved)."""
    inner, outer = _resolved(path), _resolved(folder)
    return inner == outer or outer in inner.parents


def refuse_overlap(output: str | os.PathLike, option: str,
                   inputs: Iterable[tuple[str, str | os.PathLike | None]]) -> None:
    """`UserError` when writing `output` (a file or a folder of outputs) could overwrite an input.

    `inputs` are (option, path) pairs; a None path is skipped. Refused: the output is an input
    file, or is or lies in an input folder.
    """
    for name, source in inputs:
        if source is None:
            continue
        if is_within(output, source):
            raise UserError(f"{option} '{output}' would overwrite the input of {name} '{source}'; "
                            "choose an output outside it")


def require_regular_input(path: str | os.PathLike, what: str) -> Path:
    """The path when it is an existing regular file or folder; `UserError` for a FIFO, socket or
    device (reading one could block forever) or a missing path."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        broken = " (a broken symbolic link)" if path.is_symlink() else ""
        raise UserError(f"{what} '{path}' does not exist{broken}") from None
    except OSError as exc:
        raise UserError(f"cannot read {what} '{path}': {exc.strerror or exc}") from None
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise UserError(f"{what} '{path}' is not a regular file or folder (a pipe or device?)")
    return path
