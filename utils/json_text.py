"""JSON that every parser reads: NaN and infinities written as null (`NaN` is not JSON)."""
from __future__ import annotations

import json
import math
from typing import Any


def finite_or_null(value: Any) -> Any:
    """`value` with NaN and infinities replaced by None, in nested dicts, lists and tuples."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: finite_or_null(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(v) for v in value]
    return value


def strict_json(value: Any, indent: int = 2) -> str:
    """`value` as standard JSON text (non-finite numbers as null), ending in a newline."""
    return json.dumps(finite_or_null(value), indent=indent, allow_nan=False) + "\n"
