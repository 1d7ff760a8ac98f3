"""A PEP 517 build backend that refuses to build: this repository is not an installable package.

Its top-level folders (`datasets`, `utils`, `models`, `engine`) are the repository's layout and the
scripts run from its root; installed into site-packages they would shadow the widely used
`datasets` package and any other `utils`. Refusing at build time keeps `pip install .` from
changing a user's environment at all.
"""
from __future__ import annotations

MESSAGE = ("STBN is not an installable package: its scripts run from the repository root. "
           "Install the dependencies with `pip install -r requirements.txt` (or let `bash main.sh` "
           "make .venv), then run e.g. `python denoise.py in.mp4 -o out.mp4` from the checkout.")


class NotInstallable(RuntimeError):
    """Raised by every build hook, so pip stops with `MESSAGE` before writing anything."""


def _refuse(*_args: object, **_kwargs: object) -> str:
    raise NotInstallable(MESSAGE)


build_wheel = build_sdist = build_editable = _refuse
prepare_metadata_for_build_wheel = prepare_metadata_for_build_editable = _refuse


def get_requires_for_build_wheel(config_settings: dict | None = None) -> list[str]:
    """Nothing to install first: the build fails at once, offline."""
    return []


get_requires_for_build_sdist = get_requires_for_build_editable = get_requires_for_build_wheel
