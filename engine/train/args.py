"""The command line of `sRGB_train_bsn.py`: every official argument with its official default, our
options, their validation, and the model configuration they describe (`model_config_from_args`).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

from engine.inference.loading import ALIGN_CHOICES, DEVICE_CHOICES, FLOW_CHOICES
from engine.train.distill import FLOW_LOSS_WEIGHT, NORM_WEIGHT, PAPER_DISTILL_START, STUDENT_INITS, STUDENT_LR, TEACHERS
from models import MODEL_OPTIONS, StbnConfig, model_config
from models.direction_fusion import DIRECTION_FUSIONS
from models.head import gaussian_outputs
from utils.errors import BOUNDED_INT, UserArgumentParser, UserError
from utils.noise import parse_noise_ival, parse_sigma
from utils.paths import refuse_overlap

# Training sigma range per model when --noise_ival is not given: each official script's default.
DEFAULT_NOISE_IVAL = {"bdc_2_unify": (5.0, 55.0), "stbn": (5.0, 55.0), "bdc_flow": (30.0, 30.0)}


def add_schedule_arguments(group: argparse._ArgumentGroup, batch_size: int, epochs: int, lr: float,
                           print_every: int) -> None:
    """The official schedule arguments every training script has, with that script's defaults
    (MultiStepLR milestones 2 4 6 8 and gamma 0.5 in both official scripts)."""
    group.add_argument("--batch_size", type=BOUNDED_INT, default=batch_size, help="clips per step (per process)")
    group.add_argument("--epochs", "--e", type=BOUNDED_INT, default=epochs, help="number of epochs")
    group.add_argument("--milestones", type=BOUNDED_INT, nargs="+", default=[2, 4, 6, 8],
                       help="epochs after which the learning rate is multiplied by --gamma")
    group.add_argument("--gamma", type=float, default=0.5, help="learning-rate decay factor")
    group.add_argument("--lr", type=float, default=lr, help="Adam learning rate")
    group.add_argument("--print_every", type=BOUNDED_INT, default=print_every, help="log every N iterations")


def add_run_arguments(group: argparse._ArgumentGroup) -> None:
    """How a training runs, the same for every training script: device, flow, seed, loader, precision,
    time budget, compilation."""
    group.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    group.add_argument("--pwc_weights", help="PWC-Net weights (authors' file or an STBN checkpoint)")
    group.add_argument("--flow", default="auto", choices=FLOW_CHOICES,
                       help="auto = PWC-Net when weights are known, else OpenCV DIS; zero = static scenes")
    group.add_argument("--seed", type=BOUNDED_INT, default=0, help="seed of crops, noise and shuffling")
    group.add_argument("--num_workers", type=BOUNDED_INT, default=4, help="data-loader processes")
    group.add_argument("--amp", action="store_true",
                       help="bf16 autocast of the network on CUDA (the loss stays float32); on the CPU it falls back "
                            "to float32 with a warning: bf16 convolution gradients come out NaN there")
    group.add_argument("--time_budget", type=float, default=None, metavar="MINUTES",
                       help="stop when this much training time is spent: the current epoch ends after its "
                            "step and is saved as usual (checkpoint, metrics, curves); rerunning continues")
    group.add_argument("--compile", action="store_true",
                       help="torch.compile the network for training (5-11%% faster steps on a 2-core CPU after a "
                            "compile of about a minute; benchmarks/train_speed.py)")


def build_arg_parser() -> argparse.ArgumentParser:
    """Every official `sRGB_train_bsn.py` argument with its official default, plus our options."""
    p = UserArgumentParser(description="Self-supervised STBN training on sRGB videos.")
    official = p.add_argument_group("official arguments (defaults as the authors' script)")
    official.add_argument("--model", default="bdc_2_unify",
                          help="network: bdc_2_unify (= stbn, the released model) or bdc_flow")
    official.add_argument("--num_resblocks", type=BOUNDED_INT, default=5,
                          help="residual units of the fusion blocks (the head gets half)")
    official.add_argument("--train_length", type=BOUNDED_INT, default=8, help="frames per training clip")
    add_schedule_arguments(official, batch_size=4, epochs=10, lr=3e-4, print_every=200)
    official.add_argument("--noise_ival", type=float, nargs=2, default=None, metavar=("LOW", "HIGH"),
                          help="training sigma range on the 0-255 scale; equal values = fixed sigma "
                               f"(default: {' '.join(map(str, DEFAULT_NOISE_IVAL['bdc_2_unify']))}, as the "
                               "authors' main script; 30 30 for bdc_flow, as their distillation script)")
    official.add_argument("--val_noiseL", type=float, default=30.0,
                          help="validation sigma on the 0-255 scale")
    official.add_argument("--patch_size", "--p", type=BOUNDED_INT, default=96, help="training crop size")
    official.add_argument("--patches_per_epoch", "--n", type=BOUNDED_INT, default=32000,
                          help="training clips per epoch (all processes together)")
    official.add_argument("--trainset_dir", help="training frames: one sub-folder of frames per sequence")
    official.add_argument("--valset_dir", help="validation frames: one sub-folder per sequence (e.g. Set8)")
    official.add_argument("--log_dir", help="checkpoints and logs (default logs/builtin with --builtin, "
                                            "else logs/stbn); rerunning resumes")
    extra = p.add_argument_group("additional options")
    extra.add_argument("--num_channels", type=BOUNDED_INT, default=64, help="hidden feature width")
    extra.add_argument("--builtin", metavar="CLIPS",
                       help="train on built-in clips' training parts (bikes, carphone; several separated by "
                            "commas, or all), validate on their held-out parts")
    extra.add_argument("--val_max_frames", type=BOUNDED_INT, default=85,
                       help="frames per validation sequence (official 85)")
    add_run_arguments(extra)
    extra.add_argument("--init_weights", metavar="FILE",
                       help="start a new run from these weights (a denoiser such as weights/stbn_blind_small.pth "
                            "or a checkpoint of the same configuration) with a fresh optimizer and schedule; "
                            "ignored when --log_dir holds a run to resume")
    extra.add_argument("--augment", action="store_true", help="random flips and rotations of clips")
    extra.add_argument("--colour_augment", action="store_true",
                       help="random order of the RGB channels per clip (keeps a model trained on dull footage "
                            "from learning to remove colour)")
    extra.add_argument("--saturation_augment", type=float, default=1.0, metavar="S",
                       help="scale each clip's colour by a random factor in [1, S] (S >= 1; 1 = off), so that "
                            "grey footage also teaches colourful content")
    ablation = p.add_argument_group(
        "ablations (paper Table 3, Set8 sigma 30: propagation only = --no_bsa --no_srfe; + BSA = --no_srfe; "
        "+ SRFE = no switch; + distillation = --distill); recorded in the checkpoint, evaluated as trained")
    ablation.add_argument("--align", default="nearest", choices=ALIGN_CHOICES,
                          help="hidden-state warp: nearest (official), bilinear (FloRNN, correlates the "
                               "noise), softsplat (average forward splatting)")
    ablation.add_argument("--no_bsa", action="store_true",
                          help="no blind-spot alignment block: the state is the blind-spot cell's output")
    ablation.add_argument("--no_srfe", action="store_true",
                          help="no SRFE: a per-pixel 1x1 convolution fuses the two directions "
                               "(= --direction_fusion pixelwise)")
    ablation.add_argument("--direction_fusion", dest="fusion", default="srfe", choices=tuple(DIRECTION_FUSIONS),
                          help="block that merges the two directions (models/direction_fusion.py): srfe "
                               "(official), pixelwise, dilated")
    distill = p.add_argument_group(
        "flow distillation (student = the model's PWC-Net, trained on the noisy frames towards a teacher's "
        "flows on the predicted mean; the denoising loss never reaches it)")
    distill.add_argument("--distill", dest="distill", action="store_const", const=True, default=None,
                         help="train the PWC-Net by distillation (default: on for bdc_flow, off for bdc_2_unify)")
    distill.add_argument("--no_distill", dest="distill", action="store_const", const=False,
                         help="keep bdc_flow's PWC-Net frozen")
    distill.add_argument("--teacher", default="pwc", choices=TEACHERS,
                         help="pwc: frozen copy of the initial PWC-Net (official; needs --pwc_weights); "
                              "dis: OpenCV DIS flow, so a student can learn from random weights offline "
                              "(then align with --flow dis while it learns)")
    distill.add_argument("--distill_start", type=BOUNDED_INT, default=PAPER_DISTILL_START,
                         help="iterations before the flow loss is switched on (paper 1000, official code 0)")
    distill.add_argument("--distill_weight", type=float, default=FLOW_LOSS_WEIGHT,
                         help="weight alpha of the flow loss (paper and official 5e-4)")
    distill.add_argument("--distill_lr", type=float, default=STUDENT_LR,
                         help="Adam learning rate of the student (official 1e-5; MultiStepLR scales it too)")
    distill.add_argument("--distill_norm_weight", type=float, default=NORM_WEIGHT,
                         help="weight of the student's summed parameter norms inside the flow loss "
                              "(official 4e-4; 0 drops the term)")
    distill.add_argument("--student_init", default="default", choices=STUDENT_INITS,
                         help="initial student without --pwc_weights: default (PyTorch's layer init; its cost "
                              "volumes are ~1e-4) or he (He init, zero flow heads; a from-scratch aid, "
                              "not the paper's)")
    return p


def require(condition: bool, message: str) -> None:
    """`UserError(message)` unless `condition`."""
    if not condition:
        raise UserError(message)



def validate_schedule_args(args: argparse.Namespace) -> None:
    """Checks every training script shares: PWC-Net weights file, rate, decay, milestones, budget."""
    require(args.pwc_weights is None or Path(args.pwc_weights).is_file(),
            f"--pwc_weights: '{args.pwc_weights}' is not an existing file")
    for name in ("lr", "gamma"):
        value = getattr(args, name)
        require(math.isfinite(value) and value > 0, f"--{name} must be a positive number, got {value}")
    require(args.time_budget is None or (math.isfinite(args.time_budget) and args.time_budget > 0),
            f"--time_budget must be a positive number of minutes, got {args.time_budget}")
    milestones = list(args.milestones)
    require(all(m >= 1 for m in milestones) and milestones == sorted(set(milestones)),
            f"--milestones must be positive epochs in increasing order, got {' '.join(map(str, milestones))}")


def validate_args(args: argparse.Namespace) -> None:
    """Reject inconsistent arguments with a one-line `UserError`; fill in the default log_dir."""
    require((args.trainset_dir is None) != (args.builtin is None),
            "give exactly one of --trainset_dir DIR (one sub-folder of frames per sequence) or --builtin CLIP")
    for name in ("trainset_dir", "valset_dir"):
        folder = getattr(args, name)
        require(folder is None or Path(folder).is_dir(), f"--{name}: '{folder}' is not an existing folder")
    require(args.init_weights is None or Path(args.init_weights).is_file(),
            f"--init_weights: '{args.init_weights}' is not an existing file")
    validate_schedule_args(args)
    for name, minimum in (("epochs", 1), ("batch_size", 1), ("train_length", 2), ("patch_size", 8),
                          ("patches_per_epoch", 1), ("print_every", 1), ("num_workers", 0),
                          ("val_max_frames", 1), ("num_channels", 1), ("num_resblocks", 0), ("seed", 0)):
        require(getattr(args, name) >= minimum, f"--{name} must be at least {minimum}, got {getattr(args, name)}")
    require(math.isfinite(args.saturation_augment) and args.saturation_augment >= 1,
            f"--saturation_augment must be a number of at least 1, got {args.saturation_augment}")
    require(not (args.no_srfe and args.fusion not in ("srfe", "pixelwise")),
            f"--no_srfe means --direction_fusion pixelwise; it contradicts --direction_fusion {args.fusion}")
    if args.distill is None:
        args.distill = args.model == "bdc_flow"
    require(args.distill_start >= 0, f"--distill_start must be at least 0, got {args.distill_start}")
    for name in ("distill_weight", "distill_lr"):
        value = getattr(args, name)
        require(math.isfinite(value) and value > 0, f"--{name} must be a positive number, got {value}")
    require(math.isfinite(args.distill_norm_weight) and args.distill_norm_weight >= 0,
            f"--distill_norm_weight must be a number of at least 0, got {args.distill_norm_weight}")
    require(args.student_init == "default" or args.pwc_weights is None,
            f"--student_init {args.student_init} initialises a student without weights; drop it or --pwc_weights")
    if args.noise_ival is None:
        args.noise_ival = list(DEFAULT_NOISE_IVAL.get(args.model, DEFAULT_NOISE_IVAL["bdc_2_unify"]))
    parse_noise_ival(args.noise_ival, "--noise_ival")
    parse_sigma(args.val_noiseL, "--val_noiseL")
    require(args.model in MODEL_OPTIONS, f"--model: unknown model {args.model!r}; known models: "
                                          f"{', '.join(MODEL_OPTIONS)}")
    if args.log_dir is None:
        args.log_dir = "logs/builtin" if args.builtin else "logs/stbn"
    require(not Path(args.log_dir).is_file(), f"--log_dir: '{args.log_dir}' is a file, not a folder")
    refuse_overlap(args.log_dir, "--log_dir", [("--trainset_dir", args.trainset_dir),
                                               ("--valset_dir", args.valset_dir)])



def model_config_from_args(args: argparse.Namespace, flow: str) -> StbnConfig:
    """The StbnConfig of a validated training command line, aligning with `flow`; the raw model's
    `--raw_loss gaussian` gives it a mean + covariance-factor head."""
    fusion = "pixelwise" if args.no_srfe else args.fusion
    config = model_config(args.model, 3, args.num_resblocks, args.num_channels, align=args.align,
                          bsa=not args.no_bsa, direction_fusion=fusion, flow=flow)
    if getattr(args, "raw_loss", "mse") == "gaussian":
        config = config.replace(head_outputs=gaussian_outputs(config.img_channels))
    return config
