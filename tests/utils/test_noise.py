import math

import cv2
import numpy as np
import pytest
import torch

from datasets.eval_sequences import to_unit_float
from datasets.image_folder import read_frames
from tests import official_protocol as official
from utils.errors import UserError
from utils.noise import (
    add_test_noise,
    add_train_noise,
    official_test_noise,
    parse_noise_ival,
    parse_sigma,
    sample_train_sigma,
)


def _write_frames(folder, frames: int, height: int, width: int, seed: int) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for t in range(frames):
        cv2.imwrite(str(folder / f"{t:05d}.png"), rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("frames,height,width", [(3, 17, 23), (1, 9, 11), (2, 1, 1), (5, 32, 48), (1, 1, 7)])
@pytest.mark.parametrize("sigma_255", [30, 12.5])
def test_test_noise_equals_the_official_draw_on_the_official_loaders_tensor(tmp_path, frames, height, width,
                                                                           sigma_255):
    """The sequence is read exactly as the official loader reads it (cv2, transposed views, /255.,
    stacked, from_numpy: (T,3,H,W) with (T,H,W,3) strides); then seed 0 and `empty_like(seq).normal_`."""
    _write_frames(tmp_path / "seq", frames, height, width, seed=frames * height)
    seq = official.open_sequence(str(tmp_path / "seq"))
    assert seq.shape == (frames, 3, height, width) and seq.dtype == torch.float32
    assert seq.permute(0, 2, 3, 1).is_contiguous()  # channels innermost in memory
    sigma = sigma_255 / 255.
    expected = official.noisy_sequence(seq, sigma)
    # Our reader's tensor (contiguous) and the official one both get the official noise.
    ours = to_unit_float(read_frames(sorted((tmp_path / "seq").iterdir()), "seq"))
    assert torch.equal(ours, seq)
    for source in (ours, seq, seq[None]):
        noisy = add_test_noise(source, sigma)
        assert torch.equal(noisy.reshape(expected.shape), expected) and noisy.is_contiguous()


def test_a_contiguous_draw_is_not_the_official_noise():
    """Why the layout matters: the contiguous draw differs (the mistake the test above guards)."""
    seq = torch.empty(3, 17, 23, 3).permute(0, 3, 1, 2)
    official_noise = official.noisy_sequence(seq.zero_(), 0.1)
    contiguous = torch.empty(3, 3, 17, 23).normal_(0, 0.1, generator=torch.Generator().manual_seed(0))
    assert not torch.equal(official_noise, contiguous)
    assert torch.equal(official_test_noise((3, 3, 17, 23), 0.1), official_noise)


def test_test_noise_is_unclipped_with_the_requested_strength():
    seq = torch.rand(3, 3, 17, 23, generator=torch.Generator().manual_seed(5))
    sigma = 30 / 255.
    noisy = add_test_noise(seq, sigma)
    assert noisy.min() < 0 or noisy.max() > 1
    assert abs((noisy - seq).std().item() - sigma) < 0.01


def test_test_noise_is_the_same_for_every_sequence_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    state = torch.get_rng_state()
    seq = torch.zeros(2, 3, 8, 8)
    first = add_test_noise(seq, 0.1)
    second = add_test_noise(seq, 0.1)
    assert torch.equal(first, second)
    assert torch.equal(torch.get_rng_state(), state)


def test_fixed_training_sigma_when_interval_collapses():
    sigmas = sample_train_sigma(4, [30 / 255.])
    assert sigmas.shape == (4, 1, 1, 1, 1)
    assert torch.all(sigmas == torch.tensor(30 / 255.))


def test_uniform_training_sigma_per_sample_and_reproducible():
    a, b = 5 / 255., 55 / 255.
    s1 = sample_train_sigma(64, [a, b], generator=torch.Generator().manual_seed(1))
    s2 = sample_train_sigma(64, [a, b], generator=torch.Generator().manual_seed(1))
    assert torch.equal(s1, s2)
    assert s1.min() >= a and s1.max() <= b
    assert len(torch.unique(s1)) == 64
    assert abs(s1.mean().item() - (a + b) / 2) < 0.02


def test_train_noise_scales_with_each_samples_sigma():
    seq = torch.full((2, 3, 3, 32, 32), 0.5)
    sigmas = torch.tensor([0.01, 0.2]).view(2, 1, 1, 1, 1)
    noisy, noise_map = add_train_noise(seq, sigmas, generator=torch.Generator().manual_seed(0))
    assert noise_map.shape == seq.shape
    assert torch.all(noise_map[0] == 0.01) and torch.all(noise_map[1] == 0.2)
    std = (noisy - seq).flatten(1).std(dim=1)
    assert abs(std[0].item() - 0.01) < 0.001 and abs(std[1].item() - 0.2) < 0.02


@pytest.mark.parametrize("value", ["0", "-5", "256", "abc", "nan", "inf", None])
def test_parse_sigma_rejects_bad_values(value):
    with pytest.raises(UserError, match="--noise_sigmas"):
        parse_sigma(value, "--noise_sigmas")


def test_parse_sigma_and_interval():
    assert parse_sigma("30") == 30.0
    assert parse_sigma(255) == 255.0
    assert parse_noise_ival(["30", "30"]) == [30 / 255.]
    assert parse_noise_ival([5, 55]) == [5 / 255., 55 / 255.]
    with pytest.raises(UserError, match="reversed"):
        parse_noise_ival([55, 5])
    assert math.isclose(parse_noise_ival([10])[0], 10 / 255.)
