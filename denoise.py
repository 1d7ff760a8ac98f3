"""Denoise your own video (file or frame folder) with STBN, optionally fine-tuning on it first.

    python denoise.py noisy.mp4 -o clean.mp4 --sigma 30 --model_file logs/pretrained.pth
    python denoise.py frames/ -o denoised/ --sigma 20 --model_file ckpt.pth --finetune 200

See engine/commands/denoise_video.py and `--help`.
"""
from engine.commands.denoise_video import main
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
