"""Forward warping by (softmax) splatting: `splat(tenIn, tenFlow, tenMetric, mode)`.

PyTorch everywhere, CuPy CUDA kernels for CUDA tensors when CuPy is installed. STBN itself
aligns by backward warping; this package serves the `--align softsplat` ablation and
FloRNN-style experiments.
"""

from softmax_splatting.splat_modes import parse_mode, splat

__all__ = ["splat", "parse_mode"]
