"""Training: the loop (`loop`), its arguments, set-up and resume, one optimisation step, the sRGB and
raw recipes (`tasks`), flow distillation, multi-process runs, the run log, and per-video fine-tuning."""
from engine.train.loop import main, train
from engine.train.step import GRAD_CLIP_NORM, compute_loss, train_step

__all__ = ["GRAD_CLIP_NORM", "compute_loss", "main", "train", "train_step"]
