"""The engine, in three layers whose imports only go down:

- `engine.commands`: what users run (evaluate, denoise, the built-in report, export);
- `engine.train`: the training loop and everything it schedules (also per-video fine-tuning);
- `engine.inference`: checkpoints into models, the sequence denoiser, prior calibration.

Below them: `models/`, `datasets/`, `softmax_splatting/`, then `utils/`.
"""
