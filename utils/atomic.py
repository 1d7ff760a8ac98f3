"""Writing files so that a crash, Ctrl-C or a full disk never leaves a partial file under its name.

Every output (checkpoint, PNG frame, video, JSON, log history, plot) is written to a hidden temp
file next to its final name and renamed over it only when complete (`os.replace` is atomic on
the same file system). A write that fails removes its temp file and raises a one-line
`UserError`; a process killed mid-write leaves only a temp file, which `remove_temp_files`
recognises by its name and never mistakes for an output.
"""
from __future__ import annotations

import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.errors import UserError

# `.<final name>.<8 hex digits>.tmp[<extension>]`, as `atomic_path` names its temp files.
TEMP_NAME = re.compile(r"^\..+\.[0-9a-f]{8}\.tmp(\.[A-Za-z0-9]+)?$")


def remove_quietly(path: Path) -> None:
    """Delete `path` if it exists, ignoring errors (clean-up on a path that is already failing)."""
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | os.PathLike, what: str = "", suffix: str = "") -> Iterator[Path]:
    """Yield a temp path next to `path` to write; when the block succeeds it is renamed to `path`.

    On any failure the temp file is removed and `path` is left as it was; an `OSError` (disk
    full, no permission, missing folder) becomes `UserError("cannot write <what> '<path>': ...")`.
    `suffix` ends the temp name (e.g. '.mp4' for writers that pick the format by extension).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        remove_quietly(tmp)
        label = f"{what} " if what else ""
        raise UserError(f"cannot write {label}'{path}': {exc.strerror or exc}") from None
    except BaseException:
        remove_quietly(tmp)
        raise


def remove_temp_files(folder: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Delete the temp files that writes killed mid-way left in `folder` (only those of the output
    called `name`, when given); returns their paths."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = sorted(p for p in folder.iterdir() if TEMP_NAME.match(p.name) and p.is_file()
                   and (name is None or p.name.startswith(f".{name}.")))
    for path in stale:
        remove_quietly(path)
    return stale
