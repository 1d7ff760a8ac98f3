"""PWC-Net: official state-dict layout, golden flow parity, internal warp, weight files."""
import pytest
import torch

from engine.inference.loading import load_pwc_weights, save_pwc_weights
from models.flow import estimate_flow
from models.pwc import PWCNet, backwarp_masked
from tests.golden import fill_official, load_golden, load_reference_keys
from utils.errors import UserError


@pytest.fixture(scope="module")
def filled_net() -> PWCNet:
    net = PWCNet().eval()
    fill_official(net, prefix="pwcnet.")
    return net


def test_state_dict_keys_shapes_and_order_match_the_official_model():
    reference = [(key[len("pwcnet."):], shape) for key, shape, _ in load_reference_keys()
                 if key.startswith("pwcnet.")]
    ours = [(key, tuple(value.shape)) for key, value in PWCNet().state_dict().items()]
    assert len(reference) == 126
    assert ours == reference


def test_flow_matches_the_authors_code(filled_net):
    golden = load_golden()
    with torch.no_grad():
        flow = estimate_flow(filled_net, golden["pwc_im1"], golden["pwc_im2"])
    expected = golden["pwc_flow"]
    relative = (flow - expected).abs().max() / expected.abs().max()
    assert expected.abs().max() > 1.0  # the vector carries real motion, not zeros
    assert relative < 1e-4  # measured 2.4e-6 (float32, CPU)


def test_raw_output_is_quarter_resolution(filled_net):
    with torch.no_grad():
        out = filled_net(torch.rand(2, 3, 64, 128), torch.rand(2, 3, 64, 128))
    assert out.shape == (2, 2, 16, 32)


def test_inference_buffer_and_autograd_paths_agree(filled_net):
    im1, im2 = torch.rand(2, 3, 64, 64), torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        inference = filled_net(im1, im2)
    trained = filled_net(im1, im2)  # grad enabled: concatenation path, for flow distillation
    assert torch.equal(inference, trained)
    trained.square().mean().backward()
    weight = filled_net.netExtractor.netOne[0].weight
    assert weight.grad is not None and weight.grad.abs().sum() > 0
    filled_net.zero_grad(set_to_none=True)


def test_rejects_sizes_not_divisible_by_64(filled_net):
    with pytest.raises(ValueError, match="divisible by 64"):
        filled_net(torch.rand(1, 3, 48, 64), torch.rand(1, 3, 48, 64))


def test_internal_backwarp_grid_and_mask():
    image = torch.arange(2 * 5 * 7, dtype=torch.float32).view(1, 2, 5, 7)
    # Zero flow samples pixel centres exactly.
    torch.testing.assert_close(backwarp_masked(image, torch.zeros(1, 2, 5, 7)), image)
    # pytorch-pwc divides the flow by (W-1)/2 while pixels are 2/W apart (align_corners=False):
    # a flow of (W-1)/W moves by exactly one pixel; the last column falls outside and is masked.
    flow = torch.zeros(1, 2, 5, 7)
    flow[:, 0] = 6.0 / 7.0
    out = backwarp_masked(image, flow)
    torch.testing.assert_close(out[..., :-1], image[..., 1:], rtol=1e-5, atol=1e-4)
    assert out[..., -1].abs().max() == 0
    # A sub-pixel step into the border is masked too (partial coverage < 0.999).
    flow[:, 0] = -0.3
    assert backwarp_masked(image, flow)[..., 0].abs().max() == 0


def _assert_same_weights(a: PWCNet, b: PWCNet) -> None:
    for (key, va), vb in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(va, vb), key


def test_save_writes_the_authors_format_and_loads_back(filled_net, tmp_path):
    path = tmp_path / "network-default.pytorch"
    save_pwc_weights(filled_net, path)
    stored = torch.load(path, weights_only=True)
    assert next(iter(stored)) == "moduleExtractor.moduleOne.0.weight"
    assert "moduleRefiner.moduleMain.12.bias" in stored
    fresh = PWCNet()
    load_pwc_weights(fresh, path)
    _assert_same_weights(fresh, filled_net)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left


@pytest.mark.parametrize("prefix", ["module.pwcnet.", "pwcnet.", ""])
def test_loads_from_stbn_checkpoints_and_bare_state_dicts(filled_net, tmp_path, prefix):
    state = {prefix + key: value for key, value in filled_net.state_dict().items()}
    if prefix:
        state[prefix.replace("pwcnet.", "") + "forward_rnn.head.0.bias"] = torch.zeros(64)
        state = {"args": None, "state_dict": state}
    path = tmp_path / "ckpt_e1.pth"
    torch.save(state, path)
    fresh = PWCNet()
    load_pwc_weights(fresh, path)
    _assert_same_weights(fresh, filled_net)


def test_user_errors_for_bad_files(tmp_path):
    net = PWCNet()
    with pytest.raises(UserError, match="missing.pth' does not exist"):
        load_pwc_weights(net, tmp_path / "missing.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="text.pth'"):
        load_pwc_weights(net, tmp_path / "text.pth")
    torch.save({"state_dict": {"conv.weight": torch.zeros(3)}}, tmp_path / "other.pth")
    with pytest.raises(UserError, match="hold no PWC-Net"):
        load_pwc_weights(net, tmp_path / "other.pth")
    state = dict(net.state_dict())
    state["netRefiner.netMain.12.bias"] = torch.zeros(3)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(UserError, match="wrong shape for netRefiner.netMain.12.bias"):
        load_pwc_weights(net, tmp_path / "shape.pth")
