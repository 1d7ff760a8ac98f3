"""STBN: bidirectional blind-spot propagation with flow alignment, SRFE and a Gaussian head.

The whole model is two methods and their schedule:
- `step` is one recurrence step of one direction: align the previous hidden state onto the frame
  along the optical flow, run the blind-spot cell on [frame, aligned state, noise map], and
  re-fuse the cell output with the aligned state (blind-spot alignment, models/alignment.py).
  The first frame of each direction starts from a zero state and skips the re-fusion.
- `reconstruct` merges the forward and backward states of a frame (SRFE or another registered
  direction fusion) and applies the Gaussian head: mean and covariance factor (utils/gaussian.py).
`forward` runs the forward direction over the clip, then the backward one, reconstructing frames
as their two states exist; the bounded-memory denoiser (engine/inference/sequence.py) runs the very same
calls in another order. Memory policy (row bands, output chunks) is passed in as arguments.

The maths equals the official `bdc_2_unify.forward_training` / `forward_testing`. Attribute names
are the official checkpoint's, so its weights load with `strict=True`:

| attribute | paper | class |
|---|---|---|
| `pwcnet` | optical flow (PWC-Net) | `PWCNet` (never trained by the denoising loss) |
| `forward_rnn`, `backward_rnn` | blind-spot cells of the two directions | `BlindSpotCell` |
| `concat` | blind-spot alignment (BSA), shared by both directions | `BlindSpotAlignment` |
| `d` | spatial receptive-field expansion (SRFE) | `SRFE` or a registered direction fusion |
| `d2` | Gaussian head | `GaussianHead` |
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
import torch.nn as nn

from models.alignment import BlindSpotAlignment, align_state
from models.blind_spot import BlindSpotCell
from models.config import StbnConfig
from models.direction_fusion import build_direction_fusion
from models.flow import FlowFn, make_flow_fn, pair_flows, viewed
from models.head import GaussianHead
from models.pwc import PWCNet
from models.tiling import band_rows, conv_radius, map_row_bands

DIRECTIONS = ("forward", "backward")
# Frames are fused by the direction fusion + head in batches of about this many pixels.
OUTPUT_CHUNK_PIXELS = 1 << 20


def _no_autocast(device: torch.device):
    """Autocast switched off on `device` (a no-op where autocast does not exist, e.g. 'meta')."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return nullcontext()


class STBN(nn.Module):
    """STBN for one `StbnConfig` (official `bdc_2_unify`; `noise_map=False` is `bdc_flow`; the raw
    configuration of models/__init__.py is the official `BR_d_c_raw`).

    Build it from a config, or from config fields as keywords (`STBN(num_channels=16)`).
    Ablations (paper Table 3, Set8 sigma 30), all keeping the blind spot: `bsa=False,
    direction_fusion='pixelwise'` is "propagation only", `direction_fusion='pixelwise'` is
    "+ BSA", the defaults are "+ SRFE"; "+ distillation" trains `pwcnet` with a flow loss.
    """

    def __init__(self, config: StbnConfig | None = None, **fields: Any) -> None:
        super().__init__()
        if config is None:
            config = StbnConfig(**fields)
        elif fields:
            raise TypeError("pass either a StbnConfig or its fields, not both")
        self.config = config
        c = config
        cell_in = c.img_channels * (2 if c.noise_map else 1) + c.num_channels
        self.memory_format = torch.contiguous_format
        self.pwcnet = PWCNet()
        self.forward_rnn = BlindSpotCell(cell_in, c.num_channels, c.num_channels, c.num_resblocks)
        self.backward_rnn = BlindSpotCell(cell_in, c.num_channels, c.num_channels, c.num_resblocks)
        if c.bsa:
            self.concat = BlindSpotAlignment(c.num_channels, c.num_resblocks)
        self.d = build_direction_fusion(c.direction_fusion, c.num_channels)
        self.d2 = GaussianHead(c.num_channels, c.head_outputs, c.num_resblocks)
        self.set_memory_format(torch.channels_last)

    def set_memory_format(self, memory_format: torch.memory_format) -> None:
        """Layout of weights and feature maps: channels-last (default) runs the convolutions
        faster on CPUs (oneDNN) and GPUs (tensor cores); contiguous_format is the NCHW layout."""
        self.to(memory_format=memory_format)
        self.memory_format = memory_format

    def trainable_parameters(self) -> list[dict]:
        """Adam parameter groups in the official order (d2, forward_rnn, concat, backward_rnn, d).

        PWC-Net is excluded: the denoising loss never trains it.
        """
        modules = [self.d2, self.forward_rnn, self.concat if self.config.bsa else None,
                   self.backward_rnn, self.d]
        return [{"params": list(m.parameters())} for m in modules if m is not None]

    # ------------------------------------------------------------------ the two methods
    @contextmanager
    def _flow_context(self, device: torch.device) -> Iterator[None]:
        """Flows get no gradient (as officially) and stay float32 under autocast."""
        with torch.no_grad(), _no_autocast(device):
            yield

    def _flow_fn(self) -> FlowFn:
        return viewed(make_flow_fn(self.config.flow, self.pwcnet), self.config.flow_view)

    def pair_flow(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        """The flow (N,2,H,W) that `step` needs to bring the state of frame `source` onto `target`."""
        with self._flow_context(target.device):
            first, second = (source, target) if self.config.align == "softsplat" else (target, source)
            return self._flow_fn()(first.float(), second.float())

    def step(self, direction: str, frame: torch.Tensor, noise_map: torch.Tensor | None,
             previous: torch.Tensor | None = None, flow: torch.Tensor | None = None,
             band_pixels: int | None = None) -> torch.Tensor:
        """One recurrence step -> the new hidden state (N,F,H,W).

        frame (N,C,H,W); noise_map like it (ignored without `config.noise_map`); previous: the
        previous state (N,F,H,W) of this direction and `flow` from `pair_flow(frame, its frame)`,
        or None for the first frame. `band_pixels`: compute in horizontal bands of about this many
        pixels (models/tiling.py), the same numbers in less memory.
        """
        if direction not in DIRECTIONS:
            raise ValueError(f"direction must be one of {DIRECTIONS}, got {direction!r}")
        if (previous is None) != (flow is None):
            raise ValueError("pass both the previous state and its flow, or neither (first frame)")
        cell = self.forward_rnn if direction == "forward" else self.backward_rnn
        first = previous is None
        aligned = None if first else align_state(previous, flow, self.config.align)
        refuse = self.config.bsa and not first
        parts = [frame] if first else [frame, aligned]
        if self.config.noise_map:
            parts.append(torch.broadcast_to(noise_map, frame.shape))

        def compute(band: list[torch.Tensor]) -> torch.Tensor:
            band_frame = band[0]
            state = band_frame.new_zeros(band_frame.shape[0], self.config.num_channels, *band_frame.shape[2:]) \
                if first else band[1]
            inputs = [band_frame, state] + (band[-1:] if self.config.noise_map else [])
            h = cell(self._join(inputs))
            return self.concat(self._join([h, state])) if refuse else h

        if band_pixels is None:
            return compute(parts)
        halo = conv_radius(cell) + (conv_radius(self.concat) if refuse else 0)
        rows = band_rows(frame.shape[-2], frame.shape[-1], band_pixels, halo)
        return map_row_bands(compute, parts, halo, rows)

    def reconstruct(self, h_forward: torch.Tensor, h_backward: torch.Tensor) -> torch.Tensor:
        """Forward and backward states (M,F,H,W) of the same frames -> head output (M,head_outputs,H,W)."""
        return self.d2(self.d(h_forward, h_backward))

    def _join(self, parts: list[torch.Tensor]) -> torch.Tensor:
        """torch.cat along channels, written into one buffer in the model's memory format.

        When gradients flow, torch.cat itself: the backward of slice assignments (CopySlices)
        copies the whole gradient once per part, the backward of cat only slices it.
        """
        if torch.is_grad_enabled() and any(p.requires_grad for p in parts):
            return torch.cat(parts, dim=1).contiguous(memory_format=self.memory_format)
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
        if seqn.dim() != 5 or seqn.shape[2] != self.config.img_channels:
            raise ValueError(f"expected a clip (N,T,{self.config.img_channels},H,W), got {tuple(seqn.shape)}")
        if not self.config.noise_map:
            return None
        if noise_level_map is None:
            raise ValueError("this model reads a noise level map; pass noise_level_map (N,T,C,H,W)")
        return torch.broadcast_to(noise_level_map.to(seqn.dtype), seqn.shape)

    def _alignment_flows(self, seqn: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(onto_next, onto_prev), each (N,T-1,2,H,W): index k aligns frame k onto k+1, resp.
        frame k+1 onto k (the official flows_forward / flows_backward for backward warping)."""
        with self._flow_context(seqn.device):
            flows_backward, flows_forward = pair_flows(self._flow_fn(), seqn.float())
        if self.config.align == "softsplat":
            return flows_backward, flows_forward
        return flows_forward, flows_backward

    def forward(self, seqn: torch.Tensor, noise_level_map: torch.Tensor | None = None,
                output_chunk_pixels: int = OUTPUT_CHUNK_PIXELS) -> tuple[torch.Tensor, None]:
        """Noisy clip (N,T,C,H,W) [+ noise map] -> ((N,T,head_outputs,H,W), None), train and eval alike.

        The paper's two passes and the reconstruction: a forward pass over frames 0..T-1 and a
        backward pass over T-1..0, each state aligned from its neighbour's by optical flow; each
        frame's output fuses its two states. The second value is the official "sigma" slot (None:
        the known sigma is used). Frames are reconstructed in batches of about
        `output_chunk_pixels` pixels (same numbers; see `_Reconstruction`).
        """
        nmap = self._check_inputs(seqn, noise_level_map)
        onto_next, onto_prev = self._alignment_flows(seqn) if seqn.shape[1] > 1 else (None, None)
        forward_states = dict(self.propagate("forward", seqn, nmap, onto_next))
        output = _Reconstruction(self, forward_states, seqn, output_chunk_pixels)
        for i, backward_state in self.propagate("backward", seqn, nmap, onto_prev):
            output.add(i, backward_state)
        return output.result(), None

    def propagate(self, direction: str, seqn: torch.Tensor, nmap: torch.Tensor | None,
                  flows: torch.Tensor | None) -> Iterator[tuple[int, torch.Tensor]]:
        """One pass over the clip: yield (frame index, hidden state), frames 0..T-1 'forward' (each
        state aligned by `flows[:, i-1]`, frame i-1 onto i) or T-1..0 'backward' (by `flows[:, i]`,
        frame i+1 onto i)."""
        length = seqn.shape[1]
        order = range(length) if direction == "forward" else reversed(range(length))
        state = None
        for k, i in enumerate(order):
            flow = None if k == 0 else flows[:, i - 1] if direction == "forward" else flows[:, i]
            state = self.step(direction, seqn[:, i], None if nmap is None else nmap[:, i], state, flow)
            yield i, state


class _Reconstruction:
    """Execution policy of `STBN.forward`'s output stage: frames are reconstructed as their backward
    state arrives, in batches of about `chunk_pixels` pixels, each forward state released once used.
    Without gradients the outputs go straight into one buffer; with gradients they are concatenated
    once at the end (the backward of slice assignments copies the whole gradient once per slice)."""

    def __init__(self, model: STBN, forward_states: dict[int, torch.Tensor], seqn: torch.Tensor,
                 chunk_pixels: int) -> None:
        n, length, _, height, width = seqn.shape
        self.model, self.forward_states = model, forward_states
        self.chunk = max(1, chunk_pixels // max(1, n * height * width))
        self.keep_graph = torch.is_grad_enabled()
        self.buffer = None if self.keep_graph else seqn.new_empty(n, length, model.config.head_outputs, height, width)
        self.pieces: list[torch.Tensor] = []
        self.pending: list[tuple[int, torch.Tensor]] = []

    def add(self, i: int, backward_state: torch.Tensor) -> None:
        """The backward state of frame i (frames arrive in decreasing order)."""
        self.pending.append((i, backward_state))
        if len(self.pending) == self.chunk or i == 0:
            first, result = self._reconstruct_pending()
            if self.keep_graph:
                self.pieces.append(result)
            else:
                self.buffer[:, first:first + result.shape[1]] = result
            self.pending = []

    def result(self) -> torch.Tensor:
        return torch.cat(self.pieces[::-1], dim=1) if self.keep_graph else self.buffer

    def _reconstruct_pending(self) -> tuple[int, torch.Tensor]:
        """Fuse the pending frames in one batch: (first frame, output (N,len,C,H,W))."""
        model = self.model
        order = [i for i, _ in reversed(self.pending)]
        states = dict(self.pending)
        n = self.pending[0][1].shape[0]
        forward_batch = torch.cat([self.forward_states.pop(i) for i in order]).contiguous(
            memory_format=model.memory_format)
        backward_batch = torch.cat([states[i] for i in order]).contiguous(memory_format=model.memory_format)
        del states
        result = model.reconstruct(forward_batch, backward_batch)
        return order[0], result.view(len(order), n, *result.shape[1:]).transpose(0, 1)
