"""`StbnConfig`: the single description of an STBN variant.

`build_model` takes it, checkpoints store it (key 'config', beside the authors' keys), and every
loader rebuilds exactly it. The official model names are presets of it (models/__init__.py).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from models.alignment import ALIGN_MODES
from models.direction_fusion import DIRECTION_FUSIONS
from models.flow import FLOW_KINDS, FLOW_VIEWS
from models.head import gaussian_outputs


@dataclass(frozen=True)
class StbnConfig:
    """One STBN variant.

    img_channels: channels of a frame (3 for sRGB, 4 for packed Bayer raw);
    num_channels: width F of the hidden state; num_resblocks: dilated residual units of the
    blind-spot cells and of blind-spot alignment (the head gets half);
    noise_map: the cells also read a noise-level map (the released sRGB model; not `bdc_flow`);
    head_outputs: channels of the head (default: mean + covariance factor, 9 for RGB);
    align: how the previous state is brought onto the frame ('nearest' official, 'bilinear',
    'softsplat'); bsa: blind-spot alignment re-fuses cell output and aligned state;
    direction_fusion: the block merging both directions ('srfe' official, see
    models/direction_fusion.py); flow: where alignment flows come from ('pwc' the model's
    PWC-Net, 'dis' OpenCV DIS, 'zero' no motion); flow_view: what the flow sees of a frame ('rgb',
    or 'packed_bayer': the official pseudo-RGB of 4-channel packed raw frames).
    """

    img_channels: int = 3
    num_channels: int = 64
    num_resblocks: int = 5
    noise_map: bool = True
    head_outputs: int | None = None
    align: str = "nearest"
    bsa: bool = True
    direction_fusion: str = "srfe"
    flow: str = "pwc"
    flow_view: str = "rgb"

    def __post_init__(self) -> None:
        if self.head_outputs is None:
            object.__setattr__(self, "head_outputs", gaussian_outputs(self.img_channels))
        for name, value, choices in (("align", self.align, ALIGN_MODES), ("flow source", self.flow, FLOW_KINDS),
                                     ("flow view", self.flow_view, FLOW_VIEWS),
                                     ("direction fusion", self.direction_fusion, tuple(DIRECTION_FUSIONS))):
            if value not in choices:
                raise ValueError(f"unknown {name} {value!r}; expected one of {', '.join(choices)}")
        if self.num_channels < 2 or self.num_channels % 2 or self.img_channels < 1 or self.num_resblocks < 0:
            raise ValueError(f"invalid sizes in {self}: num_channels must be even and >= 2, img_channels >= 1, "
                             "num_resblocks >= 0")

    def replace(self, **changes: Any) -> StbnConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain values, as stored in a checkpoint."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StbnConfig:
        """The config a checkpoint stored; `ValueError` naming unknown fields."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown StbnConfig field(s): {', '.join(unknown)}")
        return cls(**dict(data))
