"""Unsupervised optical-flow distillation (paper §"flow refinement"; official `bdc_flow` training).

A frozen teacher computes flows between neighbouring frames of the network's predicted mean μ
(output channels 0:3, no gradient); the student PWC-Net (`model.pwcnet`, the network that aligns
the hidden states) computes the same flows on the noisy frames with gradients and is pulled
towards the teacher:

    loss_flow = weight * (L1(teacher_bwd, student_bwd) + L1(teacher_fwd, student_fwd)
                          + 4e-4 * sum over the student's tensors of ||θ||₂ (unsquared))

with `weight` = 5e-4 (the paper's alpha). The teacher's input is detached and the student sees
only the noisy frames, so this loss trains the student alone, and the denoiser's alignment flows
stay gradient-free, so the likelihood never reaches the student.

Teachers: 'pwc' is the official one, a frozen copy of the student's initial weights (it is not a
submodule, so it is not in the model's state dict; training stores it under `teacher_pwc`);
'dis' is OpenCV DIS on μ, which needs no weights and lets a student PWC-Net learn from scratch.

From-scratch aids (not the paper's setting, which fine-tunes a pretrained PWC-Net): `he_init_`
re-initialises a random student so its cost volumes are not vanishingly small, and the norm term's
weight can be changed (`norm_weight`, official NORM_WEIGHT).
"""
from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from models.flow import make_flow_fn, pair_flows
from models.pwc import PWCNet

TEACHERS = ("pwc", "dis")
FLOW_LOSS_WEIGHT = 5e-4  # the paper's alpha (official: 0.0005)
NORM_WEIGHT = 4e-4  # weight of the student's summed parameter norms inside loss_flow (official)
STUDENT_LR = 1e-5  # the student's Adam learning rate (official extra parameter group)
PAPER_DISTILL_START = 1000  # iterations before distillation starts (paper; the official code: 0)
TEACHER_KEY = "teacher_pwc"  # checkpoint key of the teacher's weights (ignored by the authors' scripts)
STUDENT_INITS = ("default", "he")


def parameter_norm_sum(params: Iterable[nn.Parameter]) -> torch.Tensor:
    """Σ ||θ||₂ over tensors, each norm unsquared (the official regulariser of the student)."""
    return torch.stack([p.norm() for p in params]).sum()


def distillation_loss(student: tuple[torch.Tensor, torch.Tensor], teacher: tuple[torch.Tensor, torch.Tensor],
                      student_params: Iterable[nn.Parameter], weight: float = FLOW_LOSS_WEIGHT,
                      norm_weight: float = NORM_WEIGHT) -> torch.Tensor:
    """`weight` * (mean-L1 of both directions + `norm_weight` * Σ ||θ||₂); flows as `pair_flows` gives.

    `norm_weight` 0 drops the norm term (and skips computing it)."""
    loss = F.l1_loss(student[0], teacher[0]) + F.l1_loss(student[1], teacher[1])
    if norm_weight:
        loss = loss + norm_weight * parameter_norm_sum(student_params)
    return weight * loss


def he_init_(pwcnet: PWCNet) -> PWCNet:
    """Re-initialise a PWC-Net in place for training from scratch; returns it.

    PyTorch's default layer init shrinks the signal through the feature pyramid, so a random
    PWC-Net's cost volumes are ~1e-4 (bikes, sigma 30) and carry almost no motion signal. Here
    every (transposed) convolution gets He-normal weights for leaky ReLU slope 0.1 and zero
    biases (cost volumes ~0.1), and the layers that output flow (each decoder's `netSix` and the
    refiner's last conv) get zero weights, so the initial flow is zero instead of tens of pixels.
    Uses the global torch RNG.
    """
    for module in pwcnet.modules():
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
            nn.init.zeros_(module.bias)
    decoders = (pwcnet.netSix, pwcnet.netFiv, pwcnet.netFou, pwcnet.netThr, pwcnet.netTwo)
    for head in [d.netSix[0] for d in decoders] + [pwcnet.netRefiner.netMain[-1]]:
        nn.init.zeros_(head.weight)
    return pwcnet


class FlowDistillation:
    """Teacher, student and schedule of the flow distillation; `loss` gives the extra loss term."""

    def __init__(self, student: PWCNet, teacher: str = "pwc", teacher_pwc: PWCNet | None = None,
                 weight: float = FLOW_LOSS_WEIGHT, start_iteration: int = PAPER_DISTILL_START,
                 norm_weight: float = NORM_WEIGHT) -> None:
        if teacher not in TEACHERS:
            raise ValueError(f"unknown teacher {teacher!r}; expected one of {TEACHERS}")
        if (teacher == "pwc") != (teacher_pwc is not None):
            raise ValueError("teacher 'pwc' needs teacher_pwc (and 'dis' takes none)")
        self.student = student
        self.teacher = teacher
        self.teacher_pwc = teacher_pwc
        if teacher_pwc is not None:
            teacher_pwc.requires_grad_(False).eval()
        self.weight = weight
        self.norm_weight = norm_weight
        self.start_iteration = start_iteration
        self._teacher_flow = make_flow_fn(teacher, teacher_pwc)
        self._student_flow = make_flow_fn("pwc", student, requires_grad=True)

    @staticmethod
    def frozen_copy(student: PWCNet) -> PWCNet:
        """The official teacher: the student's current (initial) weights, frozen, not shared."""
        return copy.deepcopy(student).requires_grad_(False).eval()

    def active(self, iteration: int) -> bool:
        """Whether the flow loss is on at 1-based global `iteration` (after `start_iteration` steps)."""
        return iteration > self.start_iteration

    def loss(self, seqn: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """loss_flow for noisy clips (N,T,3,H,W) and the network output (N,T,9,H,W)."""
        with torch.no_grad():
            teacher = pair_flows(self._teacher_flow, out[:, :, :3].detach().float())
        student = pair_flows(self._student_flow, seqn.float())
        return distillation_loss(student, teacher, self.student.parameters(), self.weight, self.norm_weight)

    def teacher_state(self) -> dict[str, torch.Tensor] | None:
        """The teacher's weights for the checkpoint (None for DIS)."""
        if self.teacher_pwc is None:
            return None
        return {k: v.detach().cpu() for k, v in self.teacher_pwc.state_dict().items()}
