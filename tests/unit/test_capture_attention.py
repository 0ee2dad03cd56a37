"""The registered attention function on random tensors: plain == eager math, stop-gradient semantics,
hook positions with a KV cache, heads reductions, non-finite gradient error."""

import pytest
import torch

from saliency_lab.errors import SampleError
from saliency_lab.saliency.attention import attention_context, saliency_attention, split_hooks
from saliency_lab.saliency.single_pass import _check_finite, heads_reduce


class Mod(torch.nn.Module):
    def __init__(self, layer_idx=3):
        super().__init__()
        self.layer_idx = layer_idx


def qkv(h=4, hkv=2, q=5, k=5, d=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    mk = lambda *s: torch.randn(*s, generator=g, dtype=torch.float64)  # noqa: E731
    return mk(1, h, q, d), mk(1, hkv, k, d), mk(1, hkv, k, d)


def causal_mask(q, k):
    off = k - q
    m = torch.zeros(1, 1, q, k, dtype=torch.float64)
    for i in range(q):
        m[0, 0, i, off + i + 1:] = torch.finfo(torch.float64).min
    return m


def manual(query, key, value, mask):
    rep = query.shape[1] // key.shape[1]
    k = key.repeat_interleave(rep, dim=1)
    v = value.repeat_interleave(rep, dim=1)
    s = query @ k.transpose(2, 3) / query.shape[-1] ** 0.5 + mask
    a = torch.softmax(s, -1)
    return (a @ v).transpose(1, 2), a


@pytest.mark.parametrize("mode", ["plain", "stopgrad"])
def test_forward_equals_eager_math_gqa(mode):
    q, k, v = qkv()
    mask = causal_mask(5, 5)
    with attention_context(mode):
        out, w = saliency_attention(Mod(), q, k, v, mask)
    ref_out, ref_w = manual(q, k, v, mask)
    torch.testing.assert_close(out, ref_out, rtol=0, atol=1e-14)
    torch.testing.assert_close(w, ref_w, rtol=0, atol=1e-14)


def test_stopgrad_keeps_only_diagonal_key_value_gradients():
    q, k, v = qkv(h=2, hkv=2)
    k.requires_grad_(True)
    v.requires_grad_(True)
    mask = causal_mask(5, 5)
    with attention_context("stopgrad"):
        out, _ = saliency_attention(Mod(), q, k, v, mask)
    # Output of query i (head 0) depends, through gradients, only on key/value i.
    for i in range(5):
        gk, gv = torch.autograd.grad(out[0, i, 0].sum(), (k, v), retain_graph=True)
        for j in range(5):
            nonzero_k = bool(gk[0, 0, j].abs().sum() > 0)
            nonzero_v = bool(gv[0, 0, j].abs().sum() > 0)
            assert nonzero_k == (j == i and i > 0)  # query 0 sees only itself: softmax gradient is 0
            assert nonzero_v == (j == i)
    # Plain mode: off-diagonal gradients exist.
    with attention_context("plain"):
        out, _ = saliency_attention(Mod(), q, k, v, mask)
    gv = torch.autograd.grad(out[0, 4, 0].sum(), v)[0]
    assert bool((gv[0, 0, :4].abs().sum(-1) > 0).all())


def test_dL_dA_is_the_same_in_both_modes():
    q, k, v = qkv()
    mask = causal_mask(5, 5)
    grads = []
    for mode in ("plain", "stopgrad"):
        with attention_context(mode, record=True) as ctx:
            out, _ = saliency_attention(Mod(), q.clone().requires_grad_(True), k, v.clone().requires_grad_(True), mask)
        grads.append(torch.autograd.grad(out[0, 3].square().sum(), ctx.records[3])[0])
    torch.testing.assert_close(grads[0], grads[1], rtol=0, atol=1e-14)


def test_hooks_get_absolute_positions_with_cache():
    q, k, v = qkv(q=1, k=7)  # one decoding step with 6 cached positions
    seen = {}

    def hook(probs, *, layer_idx, query_positions, key_positions):
        seen.update(layer=layer_idx, q=query_positions.tolist(), k=key_positions.tolist(), shape=tuple(probs.shape))
        return probs * 2

    def logit_hook(scores, *, layer_idx, query_positions, key_positions):
        seen["logit_q"] = query_positions.tolist()
        return scores

    with attention_context("plain", hooks=[hook], logit_hooks=[logit_hook], record=True) as ctx:
        out, w = saliency_attention(Mod(7), q, k, v, causal_mask(1, 7))
    assert seen == {"layer": 7, "q": [6], "k": list(range(7)), "shape": (1, 4, 1, 7), "logit_q": [6]}
    ref_out, ref_w = manual(q, k, v, causal_mask(1, 7))
    torch.testing.assert_close(w, ref_w * 2)
    torch.testing.assert_close(out, ref_out * 2)
    assert ctx.records[7] is w


def test_split_hooks_by_on_logits():
    class H:
        on_logits = True

    a, b = (lambda p, **kw: p), H()
    assert split_hooks([a, b]) == ([a], [b])


def test_heads_reduce_modes():
    a = torch.tensor([[[0.5, 0.5]], [[1.0, 0.0]]])  # [H=2, T=1, n=2]
    g = torch.tensor([[[2.0, -4.0]], [[-3.0, 5.0]]])
    assert heads_reduce(a, g, "sum_abs").tolist() == [[1.0 + 3.0, 2.0 + 0.0]]
    assert heads_reduce(a, g, "abs_sum").tolist() == [[abs(1.0 - 3.0), abs(-2.0 + 0.0)]]
    with pytest.raises(ValueError):
        heads_reduce(a, g, "max")


def test_non_finite_gradient_error_names_float32():
    with pytest.raises(SampleError, match=r"s9.*bfloat16.*--dtype float32"):
        _check_finite([torch.tensor([1.0, float("inf")])], torch.bfloat16, "s9")
