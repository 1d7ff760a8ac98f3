"""The authors' sRGB test protocol, step by step, as their scripts build every array.

Written from the official code's behaviour (FastDVDnet's `get_imagenames` / `open_image` /
`open_sequence`, STBN's `sRGB_test.test`, `post_process_batch`, `fastdvdnet_batch_psnr`,
`batch_ssim`), keeping its dtypes, memory layouts and order of operations, so that tests can
compare our pipeline with theirs bit for bit. Only the network is ours (its parity with the
official network is tested against the golden vectors).
"""
from __future__ import annotations

import glob
import os

import cv2
import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

OFFICIAL_PATTERNS = ("*.bmp", "*.png", "*.jpg", "*.jpeg", "*.tif")
EPS = 1e-5


def image_names(seq_dir: str) -> list[str]:
    """Files matching the official patterns, sorted by the integer of all digits of the path."""
    files: list[str] = []
    for pattern in OFFICIAL_PATTERNS:
        files.extend(glob.glob(os.path.join(seq_dir, pattern)))
    files.sort(key=lambda f: int("".join(c for c in f if c.isdigit())))
    return files


def open_sequence(seq_dir: str, max_num_fr: int = 85) -> torch.Tensor:
    """(T,3,H,W) float32 with the strides of a (T,H,W,3) array, as `torch.from_numpy(open_sequence)`."""
    frames = []
    for path in image_names(seq_dir)[:max_num_fr]:
        chw = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB).transpose(2, 0, 1)  # a NumPy view
        frames.append(np.float32(chw / 255.))
    return torch.from_numpy(np.stack(frames, axis=0))


def noisy_sequence(seq: torch.Tensor, sigma_unit: float) -> torch.Tensor:
    """`manual_seed(0)`, `empty_like(seq).normal_`, `seq + noise`, `.contiguous()` (on the CPU)."""
    torch.manual_seed(0)
    noise = torch.empty_like(seq).normal_(mean=0, std=sigma_unit)
    return (seq + noise).contiguous()


def post_process_batch(out: torch.Tensor, seqn: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The official posterior mean with per-pixel float32 inverses; (N,T,9,H,W) -> (N,T,3,H,W).

    Returned, as officially, as a permuted view of (N,T,H,W,3) memory.
    """
    n, t, c, h, w = seqn.shape
    mean = out[:, :, :c].permute(0, 1, 3, 4, 2).reshape(n, t, h, w, c, 1)
    factor = out[:, :, c:c + c * (c + 1) // 2].permute(0, 1, 3, 4, 2)
    y = seqn.permute(0, 1, 3, 4, 2).reshape(n, t, h, w, c, 1)
    a = torch.zeros(n, t, h, w, c * c)
    start = 0
    for row in range(c):  # row i of A holds columns 0 .. c-1-i
        stop = start + c - row
        a[..., row * c:row * c + c - row] = factor[..., start:stop]
        start = stop
    a = a.reshape(n, t, h, w, c, c)
    eye = torch.eye(c).reshape(1, 1, 1, 1, c, c).repeat(n, t, h, w, 1, 1)
    prior = torch.inverse(a.transpose(4, 5) @ a + EPS * eye)
    precision = 1 / (sigma ** 2 + EPS)
    image = torch.inverse(prior + precision * eye) @ (prior @ mean + precision * y)
    return image.reshape(n, t, h, w, c).permute(0, 1, 4, 2, 3)


def batch_psnr(den: torch.Tensor, clean: torch.Tensor) -> float:
    """`fastdvdnet_batch_psnr`: skimage PSNR per frame on float32 arrays in their own layout."""
    den_np = den.data.cpu().numpy().astype(np.float32)
    clean_np = clean.data.cpu().numpy().astype(np.float32)
    total = 0
    for i in range(den_np.shape[0]):
        total += peak_signal_noise_ratio(clean_np[i].clip(0, 1), den_np[i], data_range=1.)
    return total / den_np.shape[0]


def batch_ssim(den: torch.Tensor, clean: torch.Tensor) -> float:
    """`batch_ssim`: skimage SSIM per frame on float64 HxWx3 (transposed float32 arrays)."""
    den_np = np.transpose(den.data.cpu().numpy().astype(np.float32), (0, 2, 3, 1))
    clean_np = np.transpose(clean.data.cpu().numpy().astype(np.float32), (0, 2, 3, 1))
    total = 0
    for i in range(den_np.shape[0]):
        total += structural_similarity(clean_np[i].astype(float), den_np[i].astype(float), channel_axis=2,
                                       win_size=11, K1=0.01, K2=0.03, sigma=1.5, gaussian_weights=True,
                                       data_range=1)
    return total / den_np.shape[0]


def run_sequence(model: torch.nn.Module, seq_dir: str, sigma_255: float, posterior=None,
                  max_num_fr: int = 85) -> dict:
    """One sequence of the official `test()`: returns psnr, ssim and the intermediate tensors.

    `posterior(out, seqn, sigma)` replaces the official float32-inverse post-processing when given
    (to compare everything else bit for bit).
    """
    seq = open_sequence(seq_dir, max_num_fr)
    sigma_unit = sigma_255 / 255.
    seqn = noisy_sequence(seq, sigma_unit)
    noise_std = torch.FloatTensor([sigma_unit])
    t, c, h, w = seqn.shape
    with torch.no_grad():
        out, _ = model(seqn.unsqueeze(0), noise_std.expand((t, c, h, w)).unsqueeze(0))
        den = (posterior or post_process_batch)(out, seqn.unsqueeze(0), noise_std.squeeze())
    den = torch.clamp(den.squeeze(0), 0., 1.)
    return {"seq": seq, "seqn": seqn, "den": den, "psnr": batch_psnr(den, seq), "ssim": batch_ssim(den, seq)}
