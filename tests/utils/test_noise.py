import math

import pytest
import torch

from utils.errors import UserError
from utils.noise import (add_test_noise, add_train_noise, parse_noise_ival, parse_sigma,
                         sample_train_sigma)


def _official_test_noise(seq, sigma):
    torch.manual_seed(0)
    return seq + torch.empty_like(seq).normal_(mean=0, std=sigma)


def test_test_noise_equals_the_official_draw_exactly():
    seq = torch.rand(3, 3, 17, 23, generator=torch.Generator().manual_seed(5))
    sigma = 30 / 255.
    expected = _official_test_noise(seq, sigma)
    noisy = add_test_noise(seq, sigma)
    assert torch.equal(noisy, expected)
    # A leading batch dimension of one draws the same numbers.
    assert torch.equal(add_test_noise(seq[None], sigma)[0], expected)
    # Not clipped, and the noise has the requested strength.
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
