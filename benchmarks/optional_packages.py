"""Import a benchmark-only package, installing it into a throwaway folder when it is missing.

Some reference methods need packages the project does not depend on (BM4D's licence is
non-commercial, so it is never vendored nor listed in the requirements). They are installed with
pip into a folder under the system temp directory, added to `sys.path` for this run only.
Dependencies are not pulled in (`--no-deps`): the caller installs each one it needs, so nothing
in the throwaway folder duplicates the project's numpy or scipy.
"""
from __future__ import annotations

import importlib
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

THROWAWAY_DIR = Path(tempfile.gettempdir()) / "stbn_benchmark_packages"


def import_or_install(module: str, requirement: str, install: bool = True,
                      target: Path = THROWAWAY_DIR) -> tuple[ModuleType | None, str]:
    """(the module or None, a one-line note on where it came from or why it is unavailable)."""
    if str(target) not in sys.path:
        sys.path.append(str(target))  # last, so it never shadows the project's own packages
    try:
        found = importlib.import_module(module)
        return found, (f"from {target}" if str(target) in str(getattr(found, "__file__", "")) else "already installed")
    except ImportError:
        pass
    if not install:
        return None, f"'{requirement}' is not installed (installing was disabled)"
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
               requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["pip failed"])[-1]
        return None, f"could not install '{requirement}': {reason}"
    importlib.invalidate_caches()
    try:
        return importlib.import_module(module), f"installed into {target} for this run"
    except ImportError as error:
        return None, f"installed '{requirement}' but cannot import it: {error}"
