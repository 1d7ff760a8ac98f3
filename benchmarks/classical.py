"""Classical video denoisers used as reference rows of the quality benchmark.

Every function takes the noisy clip as float32 (T,H,W,3) RGB on the [0, 1] scale (unclipped, as
the official protocol adds noise) and returns a float array of the same shape; the caller clamps.
- `nlm_video`: OpenCV's multi-frame non-local means. It only accepts uint8, so its input is
  clipped to [0, 255] and rounded first: a slight handicap (it loses the clipped noise tails).
- `tv_video`: Chambolle total variation over the (T,H,W) volume, colour channels separate.
- `wavelet_video`: BayesShrink wavelet thresholding frame by frame, sigma known.
- `bm4d_video`: BM4D on the (H,W,T) volume in an orthonormal opponent colour space.
- `bm3d_video`: colour BM3D (`bm3d.bm3d_rgb`) frame by frame with the true sigma: what a user
  denoising a video with the best-known classical image denoiser gets.
"""
from __future__ import annotations

from types import ModuleType

import cv2
import numpy as np
from skimage.restoration import denoise_tv_chambolle, denoise_wavelet

NLM_TEMPORAL_WINDOW = 5
NLM_TEMPLATE_SIZE = 7
NLM_SEARCH_SIZE = 21

# Orthonormal opponent colour transform: luminance first (BM4D matches blocks on channel 0), and
# i.i.d. noise of std sigma stays i.i.d. with the same std in every channel.
OPPONENT = np.array([[1, 1, 1], [1, 0, -1], [1, -2, 1]], dtype=np.float64)
OPPONENT /= np.linalg.norm(OPPONENT, axis=1, keepdims=True)


def temporal_window(index: int, length: int, size: int) -> list[int]:
    """Frame indices of a `size`-frame window centred on `index`, mirrored at the clip's borders.

    OpenCV's multi-frame NLM needs the target in the middle of its window, so near a border the
    window is reflected (frame 0 of a 5-frame window sees frames 2, 1, 0, 1, 2): it keeps its size
    and uses the same neighbours a shifted window would. Clips shorter than the window reflect
    as often as needed.
    """
    period = 2 * (length - 1)
    indices = []
    for offset in range(-(size // 2), size // 2 + 1):
        position = abs(index + offset) % period if period else 0
        indices.append(period - position if position >= length else position)
    return indices


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """[0, 1] floats to uint8: clipped to [0, 255] and rounded."""
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)


def nlm_video(noisy: np.ndarray, h: float, window: int = NLM_TEMPORAL_WINDOW) -> np.ndarray:
    """`cv2.fastNlMeansDenoisingColoredMulti` on every frame with `window` neighbouring frames.

    `h` (filter strength on the 0-255 scale) is used for both luminance and colour; `window` is odd.
    """
    bgr = [cv2.cvtColor(frame, cv2.COLOR_RGB2BGR) for frame in to_uint8(noisy)]
    out = np.empty(noisy.shape, dtype=np.float32)
    for t in range(len(bgr)):
        neighbours = [bgr[i] for i in temporal_window(t, len(bgr), window)]
        den = cv2.fastNlMeansDenoisingColoredMulti(neighbours, window // 2, window, None, h, h,
                                                   NLM_TEMPLATE_SIZE, NLM_SEARCH_SIZE)
        out[t] = cv2.cvtColor(den, cv2.COLOR_BGR2RGB).astype(np.float32) / 255.0
    return out


def tv_video(noisy: np.ndarray, weight: float) -> np.ndarray:
    """3-D total variation (time, height, width) on each colour channel."""
    return denoise_tv_chambolle(noisy, weight=weight, channel_axis=-1).astype(np.float32)


def wavelet_video(noisy: np.ndarray, sigma: float) -> np.ndarray:
    """BayesShrink soft thresholding per frame and channel with the known noise std `sigma` ([0, 1])."""
    return np.stack([denoise_wavelet(frame, sigma=sigma, method="BayesShrink", mode="soft",
                                     channel_axis=-1, rescale_sigma=True)
                     for frame in noisy]).astype(np.float32)


def bm4d_video(noisy: np.ndarray, sigma: float, bm4d: ModuleType) -> np.ndarray:
    """BM4D (the `bm4d` package, passed in because it is installed only at run time) on the clip
    as an (H,W,T) volume per opponent channel, block matching on the luminance."""
    opponent = np.einsum("thwc,kc->kthw", noisy.astype(np.float64), OPPONENT)
    volumes = np.ascontiguousarray(opponent.transpose(0, 2, 3, 1))  # (3,H,W,T)
    denoised = np.asarray(bm4d.bm4d_multichannel(volumes, sigma)).transpose(0, 3, 1, 2)  # (3,T,H,W)
    return np.einsum("kthw,kc->thwc", denoised, OPPONENT).astype(np.float32)


def bm3d_video(noisy: np.ndarray, sigma: float, bm3d: ModuleType) -> np.ndarray:
    """`bm3d.bm3d_rgb` (the `bm3d` package, passed in because it is installed only at run time) on
    every frame, noise std `sigma` on the [0, 1] scale."""
    return np.stack([np.asarray(bm3d.bm3d_rgb(frame.astype(np.float64), sigma)) for frame in noisy]).astype(np.float32)
