"""Model registry: the official model names as presets of `StbnConfig`, and `build_model`.

Nothing is downloaded: PWC-Net starts with random weights, which come from an STBN checkpoint
or from `--pwc_weights` (models/pwc.py `load_pwc_weights`).
"""
from __future__ import annotations

from typing import Any

from models.config import StbnConfig
from models.stbn import STBN
from utils.errors import UserError

# Official model names -> the StbnConfig fields they fix.
MODEL_OPTIONS: dict[str, dict[str, Any]] = {
    "bdc_2_unify": {"noise_map": True},  # the released sRGB model (reads a noise-level map)
    "stbn": {"noise_map": True},  # alias of bdc_2_unify
    "bdc_flow": {"noise_map": False},  # the flow-distillation variant: no noise-map input
    # The raw-video (CRVD) model: packed Bayer frames (R, G, G, B), no noise map, a 4-channel
    # mean head (plain blind-spot loss), flows on the frames' pseudo-RGB.
    "BR_d_c_raw": {"img_channels": 4, "noise_map": False, "head_outputs": 4, "flow_view": "packed_bayer"},
}
MODEL_OPTIONS["stbn_raw"] = MODEL_OPTIONS["BR_d_c_raw"]  # its readable name


def model_config(name: str, img_channels: int = 3, num_resblocks: int = 5, num_channels: int = 64,
                 **options: Any) -> StbnConfig:
    """The config of the model called `name`; `options` are further StbnConfig fields."""
    if name not in MODEL_OPTIONS:
        raise UserError(f"--model: unknown model {name!r}; known models: {', '.join(MODEL_OPTIONS)}")
    fields = {"img_channels": img_channels, "num_resblocks": num_resblocks, "num_channels": num_channels}
    return StbnConfig(**{**fields, **MODEL_OPTIONS[name], **options})


def build_model(name: str | StbnConfig = "bdc_2_unify", img_channels: int = 3, num_resblocks: int = 5,
                num_channels: int = 64, **options: Any) -> STBN:
    """Build an STBN from a `StbnConfig`, or from an official name plus config fields."""
    if isinstance(name, StbnConfig):
        if options:
            raise TypeError("build_model(config) takes no further options; use config.replace(...)")
        return STBN(name)
    return STBN(model_config(name, img_channels, num_resblocks, num_channels, **options))


__all__ = ["STBN", "StbnConfig", "build_model", "model_config", "MODEL_OPTIONS"]
