"""Train the raw STBN self-supervised on CRVD (official script name; see `engine/train/raw.py`).

    python CRVD_train.py --CRVD_dir /data/CRVD --log_dir logs/raw          # the official defaults
    python CRVD_train.py --builtin bikes --num_resblocks 2 --num_channels 16 --patch_size 32 \
        --batch_size 4 --patches_per_epoch 400 --epochs 4 --device cpu   # simulated raw, no download
Rerunning a command resumes it; `bash mainraw.sh` runs either recipe.
"""
from engine.train.raw import main
from utils.errors import run_cli

if __name__ == "__main__":
    run_cli(main)
