"""Flow distillation: the loss, the gradient split, and a tiny training run that resumes exactly."""
from __future__ import annotations

import pytest
import torch

from engine.inference.loading import load_denoiser, load_pwc_weights, save_pwc_weights, strip_module_prefix
from engine.train.distill import NORM_WEIGHT, TEACHER_KEY, FlowDistillation, distillation_loss, he_init_
from engine.train.loop import build_arg_parser, compute_loss, train
from models import build_model
from models.cost_volume import cost_volume
from models.flow import estimate_flow
from models.pwc import PWCNet
from tests.engine.synthetic import make_sequence_folders, one_thread, tiny_argv  # noqa: F401
from utils.checkpoint import load_checkpoint
from utils.errors import UserError

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_bdc_flow() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("bdc_flow", num_resblocks=2, num_channels=8, flow="pwc")  # the student aligns


def test_loss_is_weighted_l1_plus_unsquared_norms():
    teacher = (torch.zeros(1, 2, 2, 4, 4), torch.zeros(1, 2, 2, 4, 4))
    student = (torch.full((1, 2, 2, 4, 4), 1.0), torch.full((1, 2, 2, 4, 4), -0.5))
    params = [torch.nn.Parameter(torch.tensor([3.0, 4.0])), torch.nn.Parameter(torch.tensor([[0.0, 2.0]]))]
    # L1: 1 + 0.5; norms: 5 + 2 (not 25 + 4).
    loss = distillation_loss(student, teacher, params, weight=5e-4)
    assert loss.item() == pytest.approx(5e-4 * (1.5 + NORM_WEIGHT * 7.0), rel=1e-6)
    # --distill_norm_weight: another weight, or 0 for the plain L1.
    assert distillation_loss(student, teacher, params, 5e-4, norm_weight=0.1).item() == pytest.approx(
        5e-4 * (1.5 + 0.1 * 7.0), rel=1e-6)
    assert distillation_loss(student, teacher, params, 5e-4, norm_weight=0.0).item() == pytest.approx(
        5e-4 * 1.5, rel=1e-6)


def test_he_init_zeroes_the_flow_and_keeps_the_cost_volume_alive():
    images = torch.rand(2, 3, 64, 128, generator=torch.Generator().manual_seed(4))
    torch.manual_seed(0)
    default, he = PWCNet(), he_init_(PWCNet())
    with torch.no_grad():
        assert he(images[:1], images[1:]).abs().max().item() == 0.0  # flow heads are zero
        assert default(images[:1], images[1:]).abs().max().item() > 0.0
        volumes = [cost_volume(*net.netExtractor(images)[1].split(1)).std().item() for net in (default, he)]
    assert volumes[1] > 30 * volumes[0]  # level-2 cost volume: ~1e-4 with PyTorch's init
    first = he.netExtractor.netOne[0]
    expected_std = (2 / (1 + 0.1 ** 2) / 27) ** 0.5  # He-normal, leaky slope 0.1, fan_in 3*3*3
    assert first.weight.std().item() == pytest.approx(expected_std, rel=0.1)
    assert first.bias.abs().max().item() == 0.0
    assert he.netRefiner.netMain[-1].weight.abs().max().item() == 0.0


def test_teacher_reads_the_mean_and_student_the_noisy_frames():
    model = _tiny_bdc_flow()
    distill = FlowDistillation(model.pwcnet, "pwc", FlowDistillation.frozen_copy(model.pwcnet))
    seqn = torch.rand(1, 3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    out = torch.cat([seqn, torch.randn(1, 3, 6, 32, 32)], dim=2)  # mean == noisy frames
    norms = sum(p.detach().norm() for p in model.pwcnet.parameters())
    assert distill.loss(seqn, out).item() == pytest.approx(5e-4 * NORM_WEIGHT * norms.item(), rel=1e-5)
    out[:, :, :3] = seqn.flip(-1)  # another mean: the flows differ, the L1 term appears
    with torch.no_grad():
        def flows(frames):  # (backward, forward) pair by pair: F(k, k+1), F(k+1, k)
            f = frames[0]
            return (torch.stack([estimate_flow(model.pwcnet, f[k:k + 1], f[k + 1:k + 2]) for k in range(2)]),
                    torch.stack([estimate_flow(model.pwcnet, f[k + 1:k + 2], f[k:k + 1]) for k in range(2)]))
        (sb, sf), (tb, tf) = flows(seqn), flows(out[:, :, :3])
        l1 = (sb - tb).abs().mean() + (sf - tf).abs().mean()
    assert l1.item() > 1e-4
    expected = 5e-4 * (l1.item() + NORM_WEIGHT * norms.item())
    assert distill.loss(seqn, out).item() == pytest.approx(expected, rel=1e-4)


def test_gradients_split_between_denoiser_and_student():
    model = _tiny_bdc_flow()
    model.pwcnet.requires_grad_(True)
    distill = FlowDistillation(model.pwcnet, "dis", None)
    seqn = torch.rand(2, 3, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    sigma = torch.full((2,), 0.1)
    terms, _ = compute_loss(model, seqn, torch.full_like(seqn, 0.1), sigma, distillation=distill)
    student = list(model.pwcnet.parameters())
    denoiser = [p for group in model.trainable_parameters() for p in group["params"]]
    from_flow = torch.autograd.grad(terms["flow"], denoiser + student, retain_graph=True, allow_unused=True)
    assert all(g is None for g in from_flow[:len(denoiser)])
    assert sum(g.abs().sum().item() for g in from_flow[len(denoiser):] if g is not None) > 0
    from_likelihood = torch.autograd.grad(terms["loglike"], denoiser + student, allow_unused=True)
    assert all(g is None for g in from_likelihood[len(denoiser):])
    assert sum(g.abs().sum().item() for g in from_likelihood[:len(denoiser)]) > 0


@pytest.fixture(scope="module")
def distill_setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("distill")
    train_dir = make_sequence_folders(root / "train", 1, 6)
    torch.manual_seed(5)
    weights = root / "initial_pwc.pth"
    save_pwc_weights(PWCNet(), weights)
    return train_dir, weights


def _run(setup, log_dir, *flags, **overrides):
    """A tiny bdc_flow training (2 steps per epoch, the flow loss from step 2 on); `flags` are
    extra switches, an override of None drops the option."""
    train_dir, weights = setup
    options = dict(model="bdc_flow", pwc_weights=weights, patches_per_epoch=4, distill_start=1,
                   distill_lr=1e-3)
    options.update(overrides)
    options = {k: v for k, v in options.items() if v is not None}
    argv = tiny_argv(train_dir, None, log_dir, **options) + list(flags)
    return train(build_arg_parser().parse_args(argv))


def _pwc_state(ckpt: dict) -> dict[str, torch.Tensor]:
    return {k[len("pwcnet."):]: v for k, v in strip_module_prefix(ckpt["state_dict"]).items()
            if k.startswith("pwcnet.")}


@pytest.mark.slow
def test_distillation_trains_the_student_and_resumes_exactly(distill_setup, tmp_path):
    _, weights = distill_setup
    initial = PWCNet()
    load_pwc_weights(initial, weights)
    straight = _run(distill_setup, tmp_path / "straight", epochs=2)
    _run(distill_setup, tmp_path / "resumed", epochs=1)
    resumed = _run(distill_setup, tmp_path / "resumed", epochs=2)
    assert resumed["start_epoch"] == 1
    a, b = straight["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)

    ckpt = load_checkpoint(tmp_path / "resumed" / "ckpt_e2.pth")
    assert ckpt["args"]["distill"] is True and ckpt["args"]["teacher"] == "pwc"
    groups = ckpt["optimizer"]["param_groups"]
    assert len(groups) == 6 and groups[-1]["lr"] == pytest.approx(1e-3)
    student_ids = groups[-1]["params"]
    assert len(student_ids) == len(list(initial.parameters()))
    # 4 steps; the student learns from step 2 on (3 updates), across the resume.
    steps = {i: int(s["step"]) for i, s in ckpt["optimizer"]["state"].items()}
    assert {steps[i] for i in student_ids} == {3}
    assert {steps[i] for g in groups[:-1] for i in g["params"]} == {4}
    # The teacher is the initial PWC-Net and never changes; the student does.
    teacher = ckpt[TEACHER_KEY]
    assert all(torch.equal(teacher[k], v) for k, v in initial.state_dict().items())
    student = _pwc_state(ckpt)
    changed = [k for k, v in initial.state_dict().items() if not torch.equal(student[k], v)]
    assert len(changed) > len(student) // 2
    # The student is also written in the authors' PWC format each epoch.
    exported = PWCNet()
    load_pwc_weights(exported, tmp_path / "resumed" / "pwc_student_e2.pth")
    assert all(torch.equal(exported.state_dict()[k], v) for k, v in student.items())
    assert (tmp_path / "resumed" / "pwc_student_e1.pth").is_file()


def test_distilled_checkpoint_keeps_the_blind_spot_and_loads_for_evaluation(distill_setup, tmp_path):
    _run(distill_setup, tmp_path, epochs=1, flow="zero")
    # Training aligned with zero flow; the trained student may still be asked for (--flow pwc).
    model, _ = load_denoiser(tmp_path / "ckpt_e1.pth", torch.device("cpu"), "bdc_flow", 2, 8, flow="pwc")
    assert model.config.flow == "pwc"
    seqn = torch.rand(1, 3, 3, 24, 24, generator=torch.Generator().manual_seed(3), requires_grad=True)
    out, _ = model(seqn)
    out[0, 1, :, 12, 11].sum().backward()
    grad = seqn.grad[0].abs().sum(1)
    assert grad[1, 12, 11].item() == 0.0
    assert grad[1, 12, 12].item() > 0 and grad[1, 11, 11].item() > 0


def test_distillation_argument_errors(distill_setup, tmp_path):
    with pytest.raises(UserError, match="--teacher pwc needs the initial PWC-Net weights"):
        _run(distill_setup, tmp_path / "a", pwc_weights=None)
    _run(distill_setup, tmp_path / "b", epochs=1, teacher="dis", flow="zero", pwc_weights=None)
    with pytest.raises(UserError, match="--distill: the run in .* was trained with distill=True, not False"):
        _run(distill_setup, tmp_path / "b", "--no_distill", epochs=2, flow="zero", pwc_weights=None)
    with pytest.raises(UserError, match="--distill_start must be at least 0"):
        _run(distill_setup, tmp_path / "c", distill_start=-1)
    with pytest.raises(UserError, match="--distill_norm_weight must be a number of at least 0"):
        _run(distill_setup, tmp_path / "d", distill_norm_weight=-1)
    with pytest.raises(UserError, match="--student_init he initialises a student without weights"):
        _run(distill_setup, tmp_path / "e", teacher="dis", student_init="he")


def test_he_student_from_scratch_with_the_dis_teacher_and_no_norm_term(distill_setup, tmp_path):
    result = _run(distill_setup, tmp_path, epochs=1, teacher="dis", pwc_weights=None, student_init="he",
                  distill_norm_weight=0)
    ckpt = load_checkpoint(tmp_path / "ckpt_e1.pth")
    assert ckpt["args"]["student_init"] == "he" and ckpt["args"]["distill_norm_weight"] == 0
    torch.manual_seed(0)  # the trainer seeds its initial weights this way (seed 0)
    fresh = build_model("bdc_flow", num_resblocks=2, num_channels=8).pwcnet
    initial = he_init_(fresh).state_dict()
    student = _pwc_state(ckpt)
    heads = [k for k in initial if (k.endswith("netSix.0.weight") and "Extractor" not in k)
             or k == "netRefiner.netMain.12.weight"]
    assert len(heads) == 6 and all(initial[k].abs().max() == 0 for k in heads)
    # One Adam step (lr 1e-3) from the He init: no weight moved by more than the learning rate.
    assert all((student[k] - initial[k]).abs().max().item() <= 1e-3 * 1.01 for k in initial)
    # In the first student step only the two layers that output the final flow get gradients.
    final = ["netTwo.netSix.0.weight", "netRefiner.netMain.12.weight"]
    assert all((student[k].abs().max().item() > 0) == (k in final) for k in heads)
    assert torch.equal(result["model"].pwcnet.state_dict()["netRefiner.netMain.12.weight"],
                       student["netRefiner.netMain.12.weight"])
