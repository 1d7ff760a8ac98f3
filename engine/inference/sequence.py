"""Denoise a whole sequence with STBN: one pass, or streamed in bounded memory with the same numbers.

The official test runs the bidirectional network over the whole clip at once and keeps every
hidden state of both directions (about 23 GB of host RAM for an 85-frame 960x540 Set8 clip).
The 'bounded' path is another schedule of the same model calls (`pair_flow`, `STBN.step`,
`STBN.reconstruct`) with a memory policy passed in (row bands): the backward direction is read front to back
by binomial checkpointing (engine/inference/reversal.py, a few states kept, some recomputed) and the forward
direction streams alongside, so every frame is finished, post-processed and handed out as soon as
both of its states exist. Memory then depends on the frame size, not on the number of frames.

Both paths return the official test output: the Gaussian posterior mean of the network output and
the noisy frame, clamped to [0, 1].
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import nullcontext

import torch
from torch import nn
from tqdm import tqdm

from engine.inference.reversal import read_forward
from models.head import gaussian_outputs
from utils.errors import UserError, warn
from utils.gaussian import PriorScale, posterior_mean
from utils.gaussian_hetero import hetero_posterior_mean
from utils.noise import PoissonGaussian

MEMORY_MODES = ("auto", "full", "bounded")
# Hidden states the bounded path may keep, in bytes (at least 2 states are always kept).
# 768 MiB = 6 states of a 960x540 frame at 64 channels: an 85-frame Set8 clip then recomputes
# each backward step 2.6 times on average (8 states: 2.4) and peaks well under 3 GB.
DEFAULT_STATE_BUDGET = 768 << 20
# The bounded path runs each recurrence step in horizontal bands of about this many pixels
# (models/tiling.py): a 960x540 frame in three bands of 180 rows (+21 halo rows each side for the
# released model); very wide frames get thin bands, which recompute relatively more halo.
STEP_BAND_PIXELS = 1 << 18
# 'auto' takes the one-pass path when its estimate is below this share of the free memory.
_FULL_PATH_SHARE = 0.5
# Per-pixel float32 buffers of the one-pass path besides the 2 x num_channels hidden states of every
# frame: noisy frames (3), noise map (3), network output (9), posterior mean (3) and its float64
# temporaries (about 2 x 3).
_FULL_PATH_FRAME_CHANNELS = 24
# Working memory of one frame's step (SRFE at 4x channels on a quarter of the pixels, the 2C-wide
# fusion block and its residual units), in multiples of num_channels x H x W floats.
_STEP_WORKING_CHANNELS = 12

Frames = torch.Tensor | Sequence[torch.Tensor]
# The noise of the frames: a Gaussian sigma on the [0, 1] scale, or raw Poisson-Gaussian parameters.
Noise = float | PoissonGaussian
FrameCallback = Callable[[int, torch.Tensor], None]


def denoise_frames(model: nn.Module, seqn: Frames, sigma: Noise, memory: str = "auto",
                   state_budget: int = DEFAULT_STATE_BUDGET, prior_scale: PriorScale = 1.0,
                   precision: torch.dtype | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Yield (t, denoised frame (C,H,W) float32 on the CPU) for t = 0 .. T-1.

    `seqn` holds the noisy frames (T,C,H,W) on [0, 1] (a tensor, or any sequence of (C,H,W)
    tensors, e.g. a lazy reader); `sigma` is the noise std on the [0, 1] scale (or, for raw
    models, a `PoissonGaussian`; 0 for a mean-only head, which needs none). The model runs on
    the device of its parameters, in eval mode without gradients. `memory`: 'full' = the model's
    own one-pass forward, 'bounded' = streaming, 'auto' = 'full' when it fits comfortably. On CUDA
    out-of-memory the one-pass path falls back to 'bounded' with a warning. `prior_scale` (a number
    k or a 3x3 colour matrix S) calibrates the sRGB prior's covariance before the posterior
    (`utils.gaussian.scaled_prior`; 1 = official; engine/inference/prior_scale.py). `precision`
    (e.g. torch.bfloat16) runs the network under autocast in that type; flows, the Gaussian algebra
    and the posterior stay float32 (engine/inference/precision.py chooses it).
    """
    if memory not in MEMORY_MODES:
        raise UserError(f"--memory: unknown mode {memory!r}; expected one of {', '.join(MEMORY_MODES)}")
    if len(seqn) == 0:
        raise UserError("the sequence to denoise has no frames")
    if not isinstance(sigma, PoissonGaussian):
        # The official script holds sigma as a float32 tensor for the noise map and the posterior.
        sigma = torch.as_tensor(sigma, dtype=torch.float32).item()
    model.eval()
    if memory == "auto":
        memory = "full" if full_path_fits(model, seqn) else "bounded"
    if memory == "full":
        try:
            with torch.no_grad():
                denoised = _one_pass(model, seqn, sigma, prior_scale, precision)
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            warn("out of GPU memory on the one-pass path; switching to --memory bounded (same numbers)")
        else:
            for t in range(denoised.shape[0]):
                yield t, denoised[t]
            return
    yield from _streamed(model, seqn, sigma, state_budget, prior_scale, precision)


def checked_frames(model: nn.Module, seqn: Frames, sigma: Noise, memory: str = "auto",
                   desc: str = "denoising", prior_scale: PriorScale = 1.0,
                   precision: torch.dtype | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """`denoise_frames` with a progress bar, refusing a non-finite frame (a broken checkpoint or
    input) before the caller writes anything."""
    with tqdm(total=len(seqn), desc=desc, unit="frame", file=sys.stderr, dynamic_ncols=True) as bar:
        for t, frame in denoise_frames(model, seqn, sigma, memory, prior_scale=prior_scale, precision=precision):
            if not bool(torch.isfinite(frame).all()):
                raise UserError(f"denoised frame {t} is not finite (NaN or inf): the checkpoint or the input "
                                "is broken; nothing was written")
            yield t, frame
            bar.update(1)


def denoise_sequence(model: nn.Module, seqn: Frames, sigma: Noise, memory: str = "auto",
                     on_frame: FrameCallback | None = None, state_budget: int = DEFAULT_STATE_BUDGET,
                     prior_scale: PriorScale = 1.0, precision: torch.dtype | None = None) -> torch.Tensor:
    """The clamped clean estimate (T,C,H,W) on the CPU (`_estimate`); `on_frame(t, frame)` sees each frame when done.

    See `denoise_frames` for the arguments; use it directly to avoid holding the whole output.
    """
    frames = []
    for t, frame in denoise_frames(model, seqn, sigma, memory, state_budget, prior_scale, precision):
        if on_frame is not None:
            on_frame(t, frame)
        frames.append(frame)
    return torch.stack(frames)


def _model_device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def _noise_map(model: nn.Module, sigma: Noise, like: torch.Tensor) -> torch.Tensor | None:
    """The official noise-level map: sigma as a float32 value broadcast over one frame (1,C,H,W);
    None for models that read none (the raw model, bdc_flow)."""
    if not model.config.noise_map:
        return None
    return torch.full((1, like.shape[-3], *like.shape[-2:]), float(sigma), dtype=torch.float32, device=like.device)


def raw_clean_estimate(out: torch.Tensor, noisy: torch.Tensor, noise: Noise) -> torch.Tensor:
    """A C-channel head's clean estimate, not clamped: with a mean + covariance head, the posterior
    mean under per-pixel noise (a*x + b taken at the predicted mean for Poisson-Gaussian noise, sigma^2
    for a float sigma); with a mean-only head (the official raw model), the predicted mean itself."""
    channels = noisy.shape[2]
    mean = out[:, :, :channels]
    if out.shape[2] == channels:
        return mean
    variance = noise.variance(mean) if isinstance(noise, PoissonGaussian) else torch.tensor(float(noise) ** 2)
    return hetero_posterior_mean(out, noisy, variance)


def has_srgb_gaussian_head(model: nn.Module) -> bool:
    """Whether the model predicts the official sRGB Gaussian (3 means + 6 covariance-factor entries)."""
    return model.config.img_channels == 3 and model.config.head_outputs == gaussian_outputs(3)


def _estimate(model: nn.Module, out: torch.Tensor, noisy: torch.Tensor, sigma: Noise,
              prior_scale: PriorScale = 1.0) -> torch.Tensor:
    """The clean estimate of a head output (N,T,K,H,W), clamped to [0, 1]: for sRGB the official
    Gaussian posterior mean (closed form; prior calibrated by `prior_scale`), for other channel
    counts `raw_clean_estimate`."""
    if has_srgb_gaussian_head(model):
        return posterior_mean(out, noisy, sigma, prior_scale).clamp_(0.0, 1.0)
    if isinstance(prior_scale, torch.Tensor) or prior_scale != 1.0:
        raise UserError("a prior scale applies to the sRGB covariance head only")
    return raw_clean_estimate(out, noisy, sigma).clamp(0.0, 1.0)


def network_precision(device: torch.device, precision: torch.dtype | None):
    """Autocast in `precision` on `device` for the network's convolutions; nothing for float32 (None)."""
    return torch.autocast(device.type, dtype=precision) if precision is not None else nullcontext()


def head_output(model: nn.Module, seqn: Frames, sigma: Noise,
                precision: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(network output (1,T,K,H,W) in float32, noisy frames (1,T,C,H,W)) of the official one-pass
    forward, both on the model's device; call it under no_grad."""
    device = _model_device(model)
    noisy = (seqn if isinstance(seqn, torch.Tensor) else torch.stack(list(seqn)))[None].to(device)
    nmap = _noise_map(model, sigma, noisy)
    with network_precision(device, precision):
        out, _ = model(noisy, None if nmap is None else nmap[:, None].expand(*noisy.shape))
    return out.float(), noisy


def _one_pass(model: nn.Module, seqn: Frames, sigma: Noise, prior_scale: PriorScale,
              precision: torch.dtype | None = None) -> torch.Tensor:
    """The official denoise_seq: model over the whole clip, posterior mean, clamp; on the CPU."""
    out, noisy = head_output(model, seqn, sigma, precision)
    return _estimate(model, out, noisy, sigma, prior_scale)[0].cpu()


def _streamed(model: nn.Module, seqn: Frames, sigma: Noise, state_budget: int, prior_scale: PriorScale,
              precision: torch.dtype | None = None) -> Iterator[tuple[int, torch.Tensor]]:
    """Forward direction streamed over the checkpointed backward direction (see module docstring).

    Hidden states of the backward direction are kept on the CPU (host RAM is the larger pool on a
    GPU machine); everything else lives on the model's device.
    """
    device = _model_device(model)
    store = torch.device("cpu")
    length = len(seqn)
    first = seqn[0]
    nmap = _noise_map(model, sigma, first.to(device))

    def frame(t: int) -> torch.Tensor:
        return seqn[t].to(device=device, dtype=torch.float32)[None]

    def backward_step(t: int, later: torch.Tensor | None) -> torch.Tensor:
        current = frame(t)
        flow = None if later is None else model.pair_flow(current, frame(t + 1))
        later = None if later is None else later.to(device)
        with network_precision(device, precision):
            return model.step("backward", current, nmap, later, flow, STEP_BAND_PIXELS).to(store)

    slots = stored_states(model, first, length, state_budget)
    with torch.no_grad():
        hidden, previous = None, None
        for t, backward_state in read_forward(backward_step, length, slots):
            current = frame(t)
            flow = None if hidden is None else model.pair_flow(current, previous)
            with network_precision(device, precision):
                hidden = model.step("forward", current, nmap, hidden, flow, STEP_BAND_PIXELS)
                out = model.reconstruct(hidden, backward_state.to(device)).float()
            del backward_state
            clean = _estimate(model, out[:, None], current[:, None], sigma, prior_scale)[0, 0]
            previous = current
            yield t, clean.cpu()


def stored_states(model: nn.Module, frame: torch.Tensor, length: int,
                  state_budget: int = DEFAULT_STATE_BUDGET) -> int:
    """How many backward hidden states the bounded path keeps: what `state_budget` bytes hold, >= 2."""
    height, width = frame.shape[-2:]
    state_bytes = 4 * model.config.num_channels * height * width
    return max(2, min(length, state_budget // max(1, state_bytes)))


def full_path_bytes(model: nn.Module, frame: torch.Tensor, length: int) -> int:
    """Estimated peak memory of the one-pass path for `length` frames shaped like `frame`."""
    height, width = frame.shape[-2:]
    channels = model.config.num_channels
    per_frame = 2 * channels + _FULL_PATH_FRAME_CHANNELS
    return 4 * height * width * (length * per_frame + _STEP_WORKING_CHANNELS * channels)


def full_path_fits(model: nn.Module, seqn: Frames) -> bool:
    """True when the one-pass path's estimate is under half of the free memory of the model's device."""
    device = _model_device(model)
    needed = full_path_bytes(model, seqn[0], len(seqn))
    return needed < _FULL_PATH_SHARE * free_memory(device)


def free_memory(device: torch.device) -> int:
    """Free bytes on `device`: CUDA's free memory, or the host's available RAM (Linux /proc/meminfo)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo", encoding="ascii") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return 0  # unknown: 'auto' then streams, which is always safe
