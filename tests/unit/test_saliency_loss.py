"""The token loss's gradient at the logits keeps its digits for nearly certain tokens (float32), and equals the
plain autograd gradient where that one is accurate (float64)."""

import torch

from saliency_lab.saliency.loss import loss_grad, token_loss


def _confident_logits(dtype, v=1000, margin=20.0):
    z = torch.zeros(3, v, dtype=dtype)
    z[:, 7] = margin  # p(7) = 1 - ~2e-6: within float32 rounding of 1
    z[1, 3] = 2.0
    return z


def test_float32_gradient_of_a_confident_token_matches_float64():
    target = torch.tensor([7, 7, 3])
    exact = loss_grad(torch.log_softmax(_confident_logits(torch.float64), -1), target)
    z32 = _confident_logits(torch.float32)
    new = loss_grad(torch.log_softmax(z32, -1), target).double()
    rel = ((new - exact).abs() / exact.abs().clamp_min(1e-300)).max()
    assert float(rel) < 1e-5
    # The usual formula p - e_c in float32 loses the target entry (this is what the change fixes).
    p = torch.softmax(z32, -1).double()
    old = p - torch.nn.functional.one_hot(target, p.shape[-1]).double()
    old_rel = ((old[0, 7] - exact[0, 7]).abs() / exact[0, 7].abs())
    assert float(old_rel) > 1e-2


def test_token_loss_forward_and_backward():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 50, dtype=torch.float64, generator=g, requires_grad=True)
    target = torch.randint(50, (5,), generator=g)
    logp = torch.log_softmax(z, -1)
    loss = token_loss(z, logp.detach(), target)
    assert torch.allclose(loss, -logp[torch.arange(5), target])
    (ours,) = torch.autograd.grad(loss.sum(), z)
    (plain,) = torch.autograd.grad(-logp[torch.arange(5), target].sum(), z)
    assert float((ours - plain).abs().max()) < 1e-14
    # The target entry is minus the sum of the other probabilities: each row of dL/dz sums to zero.
    assert float(ours.sum(-1).abs().max()) < 1e-15
