"""Evaluate the raw STBN model on CRVD: per-ISO raw PSNR/SSIM by FloRNN's protocol (sRGB with --isp).

    python CRVD_test.py --model_file logs/raw/ckpt_e12.pth --CRVD_dir /data/CRVD --isp isp.pth
    python CRVD_test.py --model_file ckpt.pth --builtin bikes      # simulated raw, no download

See engine/commands/evaluate_raw.py for the protocol and `--help` for the options.
"""
from engine.commands.evaluate_raw import main
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
