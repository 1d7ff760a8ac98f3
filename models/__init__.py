"""Model registry: `build_model(name, ...)` builds an STBN variant by its official name.

Nothing is downloaded: PWC-Net starts with random weights, which come from an STBN checkpoint
or from `--pwc_weights` (models/pwc.py `load_pwc_weights`).
"""
from __future__ import annotations

from models.stbn import STBN
from utils.errors import UserError

# Official model names -> constructor options of STBN.
MODEL_OPTIONS: dict[str, dict] = {
    "bdc_2_unify": {"noise_map": True},  # the released sRGB model (reads a noise-level map)
    "stbn": {"noise_map": True},  # alias of bdc_2_unify
    "bdc_flow": {"noise_map": False},  # the flow-distillation variant: no noise-map input
}


def build_model(name: str, img_channels: int = 3, num_resblocks: int = 5, num_channels: int = 64,
                **options) -> STBN:
    """Build the model called `name`; `options` (align, use_bsa, use_srfe, ...) go to STBN."""
    if name not in MODEL_OPTIONS:
        raise UserError(f"--model: unknown model {name!r}; known models: {', '.join(MODEL_OPTIONS)}")
    kwargs = {**MODEL_OPTIONS[name], **options}
    return STBN(img_channels=img_channels, num_resblocks=num_resblocks,
                num_channels=num_channels, **kwargs)


__all__ = ["STBN", "build_model", "MODEL_OPTIONS"]
