"""Inference: turn a checkpoint into a configured model and denoise whole sequences with it."""
from engine.inference.loading import DEFAULT_MODEL_FILE, load_denoiser, resolve_device
from engine.inference.sequence import MEMORY_MODES, checked_frames, denoise_frames, denoise_sequence

__all__ = ["DEFAULT_MODEL_FILE", "MEMORY_MODES", "checked_frames", "denoise_frames", "denoise_sequence",
           "load_denoiser", "resolve_device"]
