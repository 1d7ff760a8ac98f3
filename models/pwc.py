"""PWC-Net as used by STBN: sniklaus' pytorch-pwc "default" network, reimplemented.

Submodule names (`netExtractor`, `netTwo` .. `netSix`, `netRefiner.netMain`, and inside them
`netOne` .. `netSix`, `netUpflow`, `netUpfeat`) are the authors' state-dict names and must not
change: the STBN checkpoint stores this network under `pwcnet.*`, and the authors' downloadable
weight file stores the same tensors under `module*` names (renamed `module` -> `net` on load).
The level names One..Six count pyramid levels 1 (stride 2) .. 6 (stride 64).

`PWCNet()(im1, im2)` returns the flow at 1/4 of the input size in units of 1/20 pixel; inputs
must have sides divisible by 64 (see `models.flow.estimate_flow` for the resizing wrapper).
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from models.cost_volume import NUM_DISPLACEMENTS, cost_volume

LEVEL_NAMES = ("netOne", "netTwo", "netThr", "netFou", "netFiv", "netSix")
PYRAMID_CHANNELS = (16, 32, 64, 96, 128, 196)
DENSE_CHANNELS = (128, 128, 96, 64, 32)  # outputs of a decoder's densely connected convs
# Factor turning the decoder's 1/20-unit flow, upsampled from the coarser level, into pixels of
# the current level (20 / 2**level): levels 5, 4, 3, 2.
BACKWARP_SCALE = {5: 0.625, 4: 1.25, 3: 2.5, 2: 5.0}
REFINER_DILATIONS = (1, 2, 4, 8, 16, 1, 1)
REFINER_CHANNELS = (128, 128, 128, 96, 64, 32, 2)
_SLOPE = 0.1


def _leaky() -> nn.LeakyReLU:
    return nn.LeakyReLU(negative_slope=_SLOPE)


def _conv(in_ch: int, out_ch: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, kernel_size=3, stride=stride, padding=dilation, dilation=dilation)


class FeaturePyramid(nn.Module):
    """Six-level feature extractor (official name `netExtractor`): per level conv s2 + 2 convs."""

    def __init__(self) -> None:
        super().__init__()
        in_ch = 3
        for name, out_ch in zip(LEVEL_NAMES, PYRAMID_CHANNELS):
            self.add_module(name, nn.Sequential(
                _conv(in_ch, out_ch, stride=2), _leaky(),
                _conv(out_ch, out_ch), _leaky(),
                _conv(out_ch, out_ch), _leaky(),
            ))
            in_ch = out_ch

    def forward(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Features of levels 1..6 (strides 2..64)."""
        features = []
        for name in LEVEL_NAMES:
            image = getattr(self, name)(image)
            features.append(image)
        return features


def decoder_input_channels(level: int) -> int:
    """Channels entering the decoder of `level`: cost volume (+ features, up-flow, up-feat)."""
    if level == 6:
        return NUM_DISPLACEMENTS
    return NUM_DISPLACEMENTS + PYRAMID_CHANNELS[level - 1] + 2 + 2


def decoder_output_channels(level: int) -> int:
    """Channels of the dense feature stack a decoder passes on (to the next level or refiner)."""
    return decoder_input_channels(level) + sum(DENSE_CHANNELS)


class FlowDecoder(nn.Module):
    """One coarse-to-fine step (official name `Decoder`): warp, correlate, dense convs, flow.

    Attributes `netUpflow`/`netUpfeat` (absent at level 6) upsample the coarser flow and features;
    `netOne`..`netFiv` are the dense convs, each output prepended to its input; `netSix` predicts
    the flow.
    """

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level
        if level < 6:
            self.netUpflow = nn.ConvTranspose2d(2, 2, kernel_size=4, stride=2, padding=1)
            self.netUpfeat = nn.ConvTranspose2d(decoder_output_channels(level + 1), 2,
                                                kernel_size=4, stride=2, padding=1)
        in_ch = decoder_input_channels(level)
        for name, out_ch in zip(LEVEL_NAMES[:5], DENSE_CHANNELS):
            self.add_module(name, nn.Sequential(_conv(in_ch, out_ch), _leaky()))
            in_ch += out_ch
        self.netSix = nn.Sequential(_conv(in_ch, 2))

    def forward(self, first: torch.Tensor, second: torch.Tensor,
                previous: tuple[torch.Tensor, torch.Tensor] | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(flow, dense features) at this level from the level's features and the coarser estimate."""
        if previous is None:
            features = F.leaky_relu(cost_volume(first, second), _SLOPE)
        else:
            flow = self.netUpflow(previous[0])
            up_features = self.netUpfeat(previous[1])
            warped = backwarp_masked(second, flow * BACKWARP_SCALE[self.level])
            volume = F.leaky_relu(cost_volume(first, warped), _SLOPE)
            features = torch.cat([volume, first, flow, up_features], dim=1)
        features = self._dense_stack(features)
        return self.netSix(features), features

    def _dense_stack(self, features: torch.Tensor) -> torch.Tensor:
        """Run `netOne`..`netFiv`, each output placed in front of its input (DenseNet style).

        Without autograd, one buffer holds the final stack and each conv reads its tail slice and
        writes its own slice in front, instead of re-concatenating the growing tensor five times;
        the convs see the same values, so the result is identical.
        """
        convs = [getattr(self, name) for name in LEVEL_NAMES[:5]]
        if torch.is_grad_enabled():
            for conv in convs:
                features = torch.cat([conv(features), features], dim=1)
            return features
        start = sum(DENSE_CHANNELS)
        stack = features.new_empty(features.shape[0], start + features.shape[1], *features.shape[2:])
        stack[:, start:] = features
        for conv, out_ch in zip(convs, DENSE_CHANNELS):
            stack[:, start - out_ch:start] = conv(stack[:, start:])
            start -= out_ch
        return stack


class ContextRefiner(nn.Module):
    """Dilated context network (official name `Refiner`, body `netMain`) adding a flow residual."""

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = decoder_output_channels(2)
        for i, (out_ch, dilation) in enumerate(zip(REFINER_CHANNELS, REFINER_DILATIONS)):
            layers.append(_conv(in_ch, out_ch, dilation=dilation))
            if i < len(REFINER_CHANNELS) - 1:
                layers.append(_leaky())
            in_ch = out_ch
        self.netMain = nn.Sequential(*layers)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.netMain(features)


def backwarp_masked(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """PWC-internal backward warp: bilinear, align_corners=False, zero where any tap falls outside.

    The sampling grid is pytorch-pwc's: pixel centres linspace(-1+1/W, 1-1/W, W) plus the flow
    divided by (W-1)/2 (and likewise for H). A warped ones-channel below 0.999 marks samples that
    touched the border; those outputs are set to 0.
    """
    batch, _, height, width = flow.shape
    opts = {"device": flow.device, "dtype": flow.dtype}
    xs = torch.linspace(-1.0 + 1.0 / width, 1.0 - 1.0 / width, width, **opts)
    ys = torch.linspace(-1.0 + 1.0 / height, 1.0 - 1.0 / height, height, **opts)
    grid = torch.stack([
        xs.view(1, 1, width) + flow[:, 0] / ((image.shape[3] - 1.0) / 2.0),
        ys.view(1, height, 1) + flow[:, 1] / ((image.shape[2] - 1.0) / 2.0),
    ], dim=3)
    ones = image.new_ones(batch, 1, image.shape[2], image.shape[3])
    sampled = F.grid_sample(torch.cat([image, ones], dim=1), grid, mode="bilinear",
                            padding_mode="zeros", align_corners=False)
    mask = (sampled[:, -1:] > 0.999).to(sampled.dtype)
    return sampled[:, :-1] * mask


class PWCNet(nn.Module):
    """PWC-Net (pytorch-pwc "default"): forward(im1, im2) -> flow (N,2,H/4,W/4) in 1/20 pixels.

    Inputs are RGB in [0,1] (as STBN feeds them) with H, W multiples of 64. The flow F
    backward-warps im2 onto im1: im1(p) ~ im2(p + 20*F(p)) at 1/4 resolution.
    """

    def __init__(self) -> None:
        super().__init__()
        self.netExtractor = FeaturePyramid()
        self.netTwo = FlowDecoder(2)
        self.netThr = FlowDecoder(3)
        self.netFou = FlowDecoder(4)
        self.netFiv = FlowDecoder(5)
        self.netSix = FlowDecoder(6)
        self.netRefiner = ContextRefiner()

    def forward(self, im1: torch.Tensor, im2: torch.Tensor) -> torch.Tensor:
        if im1.shape != im2.shape or im1.dim() != 4 or im1.shape[1] != 3:
            raise ValueError(f"PWCNet needs two (N,3,H,W) images, got {tuple(im1.shape)} and {tuple(im2.shape)}")
        if im1.shape[2] % 64 or im1.shape[3] % 64:
            raise ValueError(f"PWCNet needs H, W divisible by 64, got {tuple(im1.shape[2:])}")
        # One extractor pass over both images (same weights, so the batch split is exact).
        pyramid = self.netExtractor(torch.cat([im1, im2], dim=0))
        batch = im1.shape[0]
        estimate = None
        for level, decoder in ((6, self.netSix), (5, self.netFiv), (4, self.netFou),
                               (3, self.netThr), (2, self.netTwo)):
            features = pyramid[level - 1]
            estimate = decoder(features[:batch], features[batch:], estimate)
        flow, dense = estimate
        return flow + self.netRefiner(dense)
