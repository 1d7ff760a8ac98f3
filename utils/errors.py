"""User-facing errors and the command-line wrapper that shows them without a traceback.

A `UserError` is a mistake the user can fix (a bad path, a bad argument, a bad file); scripts
wrap their entry point in `run_cli` so such mistakes print one line and exit with code 2,
while real bugs still show their traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

_warned: set[str] = set()


class UserError(Exception):
    """A mistake of the user: bad path, bad argument or bad file. The message is one line."""


class UserArgumentParser(argparse.ArgumentParser):
    """argparse that reports a bad argument as a one-line `UserError` (so `run_cli` exits with 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{message} (see --help)")


def int_in_range(low: int, high: int) -> Callable[[str], int]:
    """An argparse `type`: an integer in [low, high] (an absurd value is refused before it overflows)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range [{low}, {high}]")
        return value
    parse.__name__ = "integer"
    return parse


# Integer options of any meaning: absurd magnitudes are refused by argparse, sensible minimums by
# each script's own checks (with their clearer messages).
BOUNDED_INT = int_in_range(-(2 ** 31), 2 ** 31 - 1)


def warn(message: str, once: bool = True) -> None:
    """Print `warning: <message>` on stderr; with `once`, each distinct message only once."""
    if once:
        if message in _warned:
            return
        _warned.add(message)
    print(f"warning: {message}", file=sys.stderr, flush=True)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> None:
    """Run `main(argv)` and exit: its return code, 2 with `error: ...` for a UserError, 130 on Ctrl-C."""
    try:
        code = main(argv)
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    sys.exit(int(code or 0))


def official_bool(value: str) -> bool:
    """Official options declared `type=bool` (`--display_time`, `--mirror_seq`): accept their spellings
    (True/False/1/0) instead of Python's bool('False') == True."""
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "y", "on"):
        return True
    if lowered in ("0", "false", "no", "n", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")
