"""An exclusive lock on a folder, so two runs never write into the same one at once.

The lock is `fcntl.flock` on a small file in the folder: the kernel releases it when its process
exits, however it exits, so a killed run never leaves the folder blocked (the file itself stays,
holding the last owner's pid for the message). Where `fcntl` does not exist (Windows) nothing is
locked.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from utils.errors import UserError

try:
    import fcntl
except ImportError:  # pragma: no cover - not on POSIX
    fcntl = None

LOCK_NAME = ".run.lock"


@contextmanager
def exclusive_lock(folder: str | os.PathLike, option: str = "--log_dir") -> Iterator[None]:
    """Hold the lock of `folder` for the block; `UserError` naming the holder's pid if it is taken."""
    if fcntl is None:
        yield
        return
    path = Path(folder) / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise UserError(f"{option}: cannot create the lock file '{path}': {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "unknown"
            raise UserError(f"{option} '{folder}' is in use by another run (pid {holder}); wait for it to "
                            f"finish or choose another {option}") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
