"""STBN: bidirectional blind-spot propagation with flow alignment, SRFE fusion and a Gaussian head.

For each direction, a blind-spot cell reads [noisy frame, aligned previous hidden state, noise
map]; the shared `concat` block re-fuses its output with the aligned state (the paper's
Blind-Spot Alignment, BSA). The first frame of each direction starts from a zero state and skips
`concat`. Per frame, SRFE (`d`) fuses the forward and backward states and the head (`d2`) gives
9 channels: mean (3) and covariance factor (6), see utils/gaussian.py.

The maths equals the official `bdc_2_unify.forward_training` / `forward_testing` (identical to
each other); `forward` is built from the streaming pieces `pair_flow`, `align`, `propagate`,
`reconstruct` so a bounded-memory denoiser can replay it frame by frame.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator

import torch
import torch.nn as nn

from models.blind_spot import BlindSpotCell
from models.flow import FLOW_KINDS, FlowFn, make_flow_fn, pair_flows
from models.fusion import DilatedFusion
from models.pwc import PWCNet
from models.srfe import SRFE
from models.tiling import band_rows, conv_radius, map_row_bands
from models.warp import backward_warp

ALIGN_MODES = ("nearest", "bilinear", "softsplat")
DIRECTIONS = ("forward", "backward")
# Covariance-factor channels of the head, on top of the mean's img_channels.
COVARIANCE_CHANNELS = 6
# Frames are fused by SRFE + head in batches of about this many pixels (bounded memory).
OUTPUT_CHUNK_PIXELS = 1 << 20


def _no_autocast(device: torch.device):
    """Autocast switched off on `device` (a no-op where autocast does not exist, e.g. 'meta')."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


class PixelwiseDirectionFusion(nn.Module):
    """The `use_srfe=False` ablation: a 1x1 convolution 2C -> C in place of SRFE.

    Per-pixel, so it keeps the blind spot; same call interface as `SRFE`.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2 * channels, channels, 1)

    def forward(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        return self.conv(torch.cat([x1, x2], dim=1))


class STBN(nn.Module):
    """STBN (official model `bdc_2_unify`; `noise_map=False` is the official `bdc_flow` layout).

    Attributes carry the official checkpoint names, registered in the official order:
    `pwcnet` (flow, never trained by the denoising loss), `forward_rnn` / `backward_rnn`
    (blind-spot cells), `concat` (BSA re-fusion, shared by both directions), `d` (SRFE), `d2` (head).

    Ablation switches (paper Table 3, Set8 sigma 30), every variant keeps the blind spot:
    - `use_bsa=False, use_srfe=False`: "propagation only" (no `concat`: the state is the cell
      output; a per-pixel 1x1 fusion of the two directions replaces SRFE);
    - `use_bsa=True, use_srfe=False`: "+ BSA";
    - defaults: "+ SRFE" (the released model);
    - "+ distillation" is the training of `pwcnet` with a flow loss, not an architecture switch.
    `align`: 'nearest' (official backward warp), 'bilinear' (FloRNN's warp with validity mask),
    'softsplat' (average forward splatting of the previous state).
    """

    def __init__(self, img_channels: int = 3, num_resblocks: int = 5, num_channels: int = 64,
                 noise_map: bool = True, align: str = "nearest", use_bsa: bool = True,
                 use_srfe: bool = True) -> None:
        super().__init__()
        if align not in ALIGN_MODES:
            raise ValueError(f"unknown align mode {align!r}; expected one of {ALIGN_MODES}")
        self.img_channels = img_channels
        self.num_channels = num_channels
        self.noise_map = noise_map
        self.align_mode = align
        self.use_bsa = use_bsa
        self.use_srfe = use_srfe
        self.flow_source = "pwc"
        self.output_chunk_pixels = OUTPUT_CHUNK_PIXELS
        self.memory_format = torch.contiguous_format
        cell_in = img_channels * (2 if noise_map else 1) + num_channels
        self.pwcnet = PWCNet()
        self.forward_rnn = BlindSpotCell(cell_in, num_channels, num_channels, num_resblocks)
        self.backward_rnn = BlindSpotCell(cell_in, num_channels, num_channels, num_resblocks)
        if use_bsa:
            self.concat = DilatedFusion(2 * num_channels, 2 * num_channels, num_channels, num_resblocks)
        self.d = SRFE(num_channels) if use_srfe else PixelwiseDirectionFusion(num_channels)
        self.d2 = DilatedFusion(num_channels, num_channels, img_channels + COVARIANCE_CHANNELS,
                                num_resblocks // 2)
        self.set_memory_format(torch.channels_last)

    # ------------------------------------------------------------------ configuration
    def set_flow_source(self, name: str) -> None:
        """Where alignment flows come from: 'pwc' (the model's PWC-Net), 'dis' (OpenCV), 'zero'."""
        if name not in FLOW_KINDS:
            raise ValueError(f"unknown flow source {name!r}; expected one of {FLOW_KINDS}")
        self.flow_source = name

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Layout of weights and feature maps: channels-last (default) runs the convolutions
        faster on CPUs (oneDNN) and GPUs (tensor cores); contiguous_format is the NCHW layout."""
        self.to(memory_format=memory_format)
        self.memory_format = memory_format

    def trainable_parameters(self) -> list[dict]:
        """Adam parameter groups in the official order (d2, forward_rnn, concat, backward_rnn, d).

        PWC-Net is excluded: the denoising loss never trains it.
        """
        modules = [self.d2, self.forward_rnn, self.concat if self.use_bsa else None,
                   self.backward_rnn, self.d]
        return [{"params": list(m.parameters())} for m in modules if m is not None]

    # ------------------------------------------------------------------ streaming pieces
    @contextmanager
    def _flow_context(self, device: torch.device) -> Iterator[None]:
        """Flows get no gradient (as officially) and stay float32 under autocast."""
        with torch.no_grad(), _no_autocast(device):
            yield

    def _flow_fn(self) -> FlowFn:
        return make_flow_fn(self.flow_source, self.pwcnet)

    def pair_flow(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The flow (N,2,H,W) that `align` needs to bring the state of frame `source` onto `target`.

        Backward warping ('nearest', 'bilinear') needs F(target, source); forward splatting
        ('softsplat') needs F(source, target).
        """
        with self._flow_context(target.device):
            first, second = (source, target) if self.align_mode == "softsplat" else (target, source)
            return self._flow_fn()(first.float(), second.float())

    def align(self, h: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
        """Bring a hidden state (N,C,H,W) onto the neighbouring frame along `pair_flow`'s flow."""
        if self.align_mode == "softsplat":
            from softmax_splatting import splat  # optional ablation path, imported on use
            return splat(h, flow, None, "avg")
        return backward_warp(h, flow, mode=self.align_mode)

    def propagate(self, direction: str, frame: torch.Tensor, nmap: torch.Tensor | None,
                  h_prev_warped: torch.Tensor | None, band_pixels: int | None = None) -> torch.Tensor:
        """One recurrence step: frame (N,C,H,W), noise map like it (ignored without noise_map),
        aligned previous state (N,F,H,W) or None for the first frame -> new state (N,F,H,W).

        `band_pixels`: compute in horizontal bands of about this many pixels (models/tiling.py):
        the same numbers, with the step's wide intermediate maps only a band high.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        cell = self.forward_rnn if direction == "forward" else self.backward_rnn
        first = h_prev_warped is None
        refuse = self.use_bsa and not first
        parts = [frame, h_prev_warped] if not first else [frame]
        if self.noise_map:
            parts.append(torch.broadcast_to(nmap, frame.shape))

        def step(band: list[torch.Tensor]) -> torch.Tensor:
            band_frame = band[0]
            warped = band_frame.new_zeros(band_frame.shape[0], self.num_channels, *band_frame.shape[2:]) \
                if first else band[1]
            inputs = [band_frame, warped] + (band[-1:] if self.noise_map else [])
            h = cell(self._join(inputs))
            return self.concat(self._join([h, warped])) if refuse else h

        if band_pixels is None:
            return step(parts)
        halo = conv_radius(cell) + (conv_radius(self.concat) if refuse else 0)
        rows = band_rows(frame.shape[-2], frame.shape[-1], band_pixels, halo)
        return map_row_bands(step, parts, halo, rows)

    def reconstruct(self, h_forward: torch.Tensor, h_backward: torch.Tensor) -> torch.Tensor:
        """Forward and backward states (M,F,H,W) of the same frames -> head output (M,9,H,W)."""
        return self.d2(self.d(h_forward, h_backward))

    def _join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """torch.cat along channels, written into one buffer in the model's memory format."""
        dtype = parts[0].dtype
        for part in parts[1:]:
            dtype = torch.promote_types(dtype, part.dtype)
        n, _, height, width = parts[0].shape
        joined = torch.empty((n, sum(p.shape[1] for p in parts), height, width), dtype=dtype,
                             device=parts[0].device, memory_format=self.memory_format)
        start = 0
        for part in parts:
            joined[:, start:start + part.shape[1]] = part
            start += part.shape[1]
        return joined

    # ------------------------------------------------------------------ whole clip
    def _check_inputs(self, seqn: torch.Tensor,
                      noise_level_map: torch.Tensor | None) -> torch.Tensor | None:
        if seqn.dim() != 5 or seqn.shape[2] != self.img_channels:
            raise ValueError(f"expected a clip (N,T,{self.img_channels},H,W), got {tuple(seqn.shape)}")
        if not self.noise_map:
            return None
        if noise_level_map is None:
            raise ValueError("this model reads a noise level map; pass noise_level_map (N,T,C,H,W)")
        return torch.broadcast_to(noise_level_map.to(seqn.dtype), seqn.shape)

    def _alignment_flows(self, seqn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(onto_next, onto_prev), each (N,T-1,2,H,W): index k aligns frame k onto k+1, resp.
        frame k+1 onto k (the official flows_forward / flows_backward for backward warping)."""
        with self._flow_context(seqn.device):
            flows_backward, flows_forward = pair_flows(self._flow_fn(), seqn.float())
        if self.align_mode == "softsplat":
            return flows_backward, flows_forward
        return flows_forward, flows_backward

    def forward(self, seqn: torch.Tensor,
                noise_level_map: torch.Tensor | None = None) -> tuple[torch.Tensor, None]:
        """Noisy clip (N,T,C,H,W) [+ noise map] -> ((N,T,C+6,H,W), None), train and eval alike.

        The second value is the official "sigma" slot (None: the known sigma is used).
        """
        nmap = self._check_inputs(seqn, noise_level_map)
        n, t, _, height, width = seqn.shape
        onto_next, onto_prev = self._alignment_flows(seqn) if t > 1 else (None, None)

        def nmap_at(i: int) -> torch.Tensor | None:
            return None if nmap is None else nmap[:, i]

        forward_hs = []
        h = None
        for i in range(t):
            warped = None if i == 0 else self.align(h, onto_next[:, i - 1])
            h = self.propagate("forward", seqn[:, i], nmap_at(i), warped)
            forward_hs.append(h)

        out = seqn.new_empty(n, t, self.img_channels + COVARIANCE_CHANNELS, height, width)
        chunk = max(1, self.output_chunk_pixels // max(1, n * height * width))
        pending: list[tuple[int, torch.Tensor]] = []
        g = None
        for i in reversed(range(t)):
            warped = None if i == t - 1 else self.align(g, onto_prev[:, i])
            g = self.propagate("backward", seqn[:, i], nmap_at(i), warped)
            pending.append((i, g))
            if len(pending) == chunk or i == 0:
                self._reconstruct_frames(pending, forward_hs, out)
                pending = []
        return out, None

    def _reconstruct_frames(self, pending: list[tuple[int, torch.Tensor]],
                            forward_hs: list[torch.Tensor | None], out: torch.Tensor) -> None:
        """Fuse a batch of frames (given in decreasing order) and write their outputs into `out`."""
        n = out.shape[0]
        first = pending[-1][0]
        rows = len(pending) * n
        like = pending[0][1]
        forward_batch = torch.empty((rows, *like.shape[1:]), dtype=like.dtype, device=like.device,
                                    memory_format=self.memory_format)
        backward_batch = torch.empty_like(forward_batch)
        for i, g in pending:
            batch_rows = slice((i - first) * n, (i - first + 1) * n)
            forward_batch[batch_rows] = forward_hs[i]
            backward_batch[batch_rows] = g
            forward_hs[i] = None  # release the forward state early
        result = self.reconstruct(forward_batch, backward_batch)
        out[:, first:first + len(pending)] = result.view(len(pending), n, *result.shape[1:]).transpose(0, 1)
