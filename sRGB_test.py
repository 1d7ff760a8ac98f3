"""Evaluate STBN with the official sRGB test protocol (Set8 / DAVIS, or a built-in clip).

    python sRGB_test.py --model_file logs/pretrained.pth --test_path /data/Set8 --noise_sigmas 10 20 30 40 50

See engine/commands/evaluate.py for the protocol and `--help` for the options.
"""
from engine.commands.evaluate import main
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
