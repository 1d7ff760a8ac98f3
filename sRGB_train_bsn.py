"""Train STBN self-supervised on sRGB videos (official script name; see `engine/train/loop.py`).

Example (the authors' recipe): python sRGB_train_bsn.py --trainset_dir DAVIS --valset_dir Set8 \
    --noise_ival 30 30 --print_every 1000 --log_dir logs/stbn
Multi-GPU: torchrun --nproc_per_node 4 sRGB_train_bsn.py ...   Rerunning a command resumes it.
"""
from engine.train.loop import main
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
