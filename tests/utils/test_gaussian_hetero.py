"""The C-channel heteroscedastic Gaussian algebra (raw --raw_loss gaussian) against the sRGB one."""
import math

import torch

from utils.gaussian import loglike_loss, posterior_mean
from utils.gaussian_hetero import factor_entries, head_channels, hetero_loglike_loss, hetero_posterior_mean


def test_head_layout_counts():
    assert head_channels(3) == 9 and head_channels(4) == 14
    assert factor_entries(3) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1), (2, 0)]  # the official upper-left


def test_three_channels_with_constant_variance_equal_the_srgb_formulas():
    torch.manual_seed(0)
    out = torch.randn(2, 3, 9, 5, 6) * 0.3
    noisy = torch.rand(2, 3, 3, 5, 6)
    sigma = torch.tensor([0.05, 0.2])
    variance = (sigma ** 2).view(2, 1, 1, 1, 1)
    assert torch.allclose(hetero_loglike_loss(out, noisy, variance), loglike_loss(out, noisy, sigma), rtol=1e-5)
    assert torch.allclose(hetero_posterior_mean(out, noisy, variance), posterior_mean(out, noisy, sigma), atol=2e-6)


def test_four_channel_heteroscedastic_values_by_hand():
    torch.manual_seed(1)
    out = torch.randn(1, 1, 14, 2, 3) * 0.4
    noisy = torch.rand(1, 1, 4, 2, 3)
    variance = 0.01 + 0.05 * torch.rand(1, 1, 4, 2, 3)
    total, expected_posterior = 0.0, torch.empty(4, 2, 3, dtype=torch.float64)
    for h in range(2):
        for w in range(3):
            o, y, n = out[0, 0, :, h, w].double(), noisy[0, 0, :, h, w].double(), variance[0, 0, :, h, w].double()
            a = torch.zeros(4, 4, dtype=torch.float64)
            for k, (i, j) in enumerate(factor_entries(4)):
                a[i, j] = o[4 + k]
            sigma = a.T @ a + torch.diag(n + 1e-5)
            r = y - o[:4]
            total += 0.5 * float(r @ torch.linalg.inv(sigma) @ r) + 0.5 * math.log(float(torch.det(sigma)))
            s = n + 1e-5
            expected_posterior[:, h, w] = y + s * (torch.linalg.inv(a.T @ a + torch.diag(s + 1e-5)) @ (o[:4] - y))
    assert abs(float(hetero_loglike_loss(out, noisy, variance)) - total / 6) < 1e-5
    assert torch.allclose(hetero_posterior_mean(out, noisy, variance)[0, 0].double(), expected_posterior, atol=1e-5)
