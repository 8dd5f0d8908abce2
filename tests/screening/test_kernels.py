"""The fused inference kernel (screening/kernels.c) against torch's ops."""
import logging

import pytest
import torch
import torch.nn.functional as F

from screening import kernels
from screening.model import ConvLayer, GaussianExpansion


def eager(u, w_u, p, q, src, dst, n):
    h = u @ w_u.T + p[src] + q[dst]
    a = h.shape[1] // 2
    return torch.zeros(n, a, dtype=h.dtype).index_add_(0, src, torch.sigmoid(h[:, :a]) * F.softplus(h[:, a:]))


def graph(n=40, k=12, regular=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    if regular:
        src = torch.arange(n).repeat_interleave(k)
    else:  # grouped by atom, a varying number each, atoms 3 and 7 none
        src = torch.randint(0, n, (n * k,), generator=g)
        src = torch.sort(src[(src != 3) & (src != 7)]).values
    dst = torch.randint(0, n, (src.numel(),), generator=g)
    d = 1.0 + 5.0 * torch.rand(src.numel(), generator=g)
    return src, dst, d


def test_this_machine_compiles_the_kernel():
    # CI's machine has a C compiler and AVX2: the fused path is the one these tests check
    assert kernels.available()


@pytest.mark.parametrize("atom_len", [8, 64])
@pytest.mark.parametrize("regular", [True, False])
def test_fused_messages_equal_torch(atom_len, regular):
    torch.manual_seed(1)
    n = 40
    src, dst, d = graph(n, regular=regular)
    expand = GaussianExpansion(8.0, 0.2)
    u = expand(d)
    w_u = torch.randn(2 * atom_len, expand.size)
    p, q = torch.randn(n, 2 * atom_len) * 3, torch.randn(n, 2 * atom_len) * 3
    want = eager(u, w_u, p, q, src, dst, n)
    k = 12 if regular else None
    whole = kernels.gated_sum(u, w_u, p, q, src, dst, k)
    banded = kernels.gated_sum(u, w_u, p, q, src, dst, k, expand.band_starts(d))
    torch.testing.assert_close(whole, want, rtol=2e-6, atol=2e-6)
    torch.testing.assert_close(banded, want, rtol=2e-6, atol=2e-6)
    assert (banded - whole).abs().max() < 1e-5
    if not regular:
        assert (torch.bincount(src, minlength=n) == 0).any()  # atoms without edges sum to 0
        assert torch.all(whole[torch.bincount(src, minlength=n) == 0] == 0)


def test_band_leaves_out_only_what_is_zero_in_float32():
    expand = GaussianExpansion(8.0, 0.2)
    d = torch.linspace(0.0, 8.0, 4001)
    u, first = expand(d), expand.band_starts(d)
    cols = torch.arange(expand.size)
    outside = (cols < first[:, None]) | (cols >= first[:, None] + kernels.BAND)
    ratio = (u * outside).max(1).values / u.max(1).values
    assert float(ratio.max()) < 1e-13
    assert int(first.min()) == 0 and int(first.max()) == expand.size - kernels.BAND


def test_extreme_and_missing_values_as_torch():
    values = torch.tensor([-1e4, -200.0, -88.0, -30.0, -1e-3, 0.0, 1e-3, 15.0, 30.0, 88.0, 200.0, 1e4])
    n = values.numel()
    gate, core = torch.meshgrid(values, values, indexing="ij")
    p = torch.cat([gate.reshape(-1, 1), core.reshape(-1, 1)], 1)  # one atom per (gate, core) pair, A = 1
    src = torch.arange(n * n)
    u, w_u = torch.zeros(n * n, 3), torch.zeros(2, 3)
    got = kernels.gated_sum(u, w_u, p, torch.zeros_like(p), src, src, 1)
    want = torch.sigmoid(p[:, :1]) * F.softplus(p[:, 1:])
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-30)
    p[5, 0] = float("nan")
    assert torch.isnan(kernels.gated_sum(u, w_u, p, torch.zeros_like(p), src, src, 1)[5]).all()


def test_threads_split_atoms_without_changing_a_bit(monkeypatch):
    torch.manual_seed(2)
    src, dst, d = graph(300, regular=False)
    u, w_u = GaussianExpansion(8.0, 0.2)(d), torch.randn(64, 41)
    p, q = torch.randn(300, 64), torch.randn(300, 64)
    one = kernels.gated_sum(u, w_u, p, q, src, dst)
    monkeypatch.setattr(kernels, "MIN_ATOMS_PER_THREAD", 7)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert torch.equal(kernels.gated_sum(u, w_u, p, q, src, dst), one)
    finally:
        torch.set_num_threads(before)


def test_what_the_kernel_cannot_take_goes_to_torch():
    src, dst, d = graph(20, regular=False)
    u, w_u, p = torch.rand(src.numel(), 41), torch.randn(16, 41), torch.randn(20, 16)
    assert kernels.gated_sum(u, w_u, p, p, src.flip(0), dst) is None  # edges not grouped by atom
    assert kernels.gated_sum(u, w_u, p, p, src, dst + 20) is None  # an atom that is not there
    assert kernels.gated_sum(u.double(), w_u.double(), p.double(), p.double(), src, dst) is None
    assert kernels.gated_sum(u, w_u, p, p, src, dst, band=torch.full_like(src, 31)) is None  # past the last center
    # the convolution then computes with torch's ops, which raise on the bad index
    conv = ConvLayer(8, 41).eval()
    with torch.no_grad(), pytest.raises(IndexError):
        conv(torch.randn(20, 8), u, src, dst + 20)


@pytest.mark.parametrize("compiler", ["/nonexistent/cc", "false"])
def test_without_a_compiler_inference_uses_torch(monkeypatch, caplog, compiler):
    monkeypatch.setenv("CC", compiler)
    library = kernels._Library()
    monkeypatch.setattr(kernels, "_library", library)
    torch.manual_seed(3)
    conv = ConvLayer(8, 41).eval()
    src, dst, d = graph(20)
    v, u = torch.randn(20, 8), GaussianExpansion(8.0, 0.2)(d)
    with caplog.at_level(logging.WARNING, logger="screening.kernels"), torch.no_grad():
        out = conv(v, u, src, dst, 12)
    assert library.tried and library.lib is None
    assert "inference uses torch's slower ops" in caplog.text and len(caplog.records) == 1
    torch.testing.assert_close(out, conv.forward_unfactorized(v, u, src, dst), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("regular", [True, False])
def test_training_gate_sum_and_its_gradient_equal_torch(regular, monkeypatch):
    """gate_sum (training): the same sums as torch's ops and the same gradient of h; atoms without
    edges get 0. On two threads it leaves the work to torch's ops (None)."""
    torch.manual_seed(4)
    n, a = 300, 32
    src, dst, d = graph(n, regular=regular)
    k = 12 if regular else None
    h = (torch.randn(src.numel(), 2 * a) * 4).requires_grad_()
    weights = torch.randn(n, a)

    def torch_ops(h):
        gate, core = h.chunk(2, dim=1)
        return torch.zeros(n, a).index_add_(0, src, torch.sigmoid(gate) * F.softplus(core))

    want = torch_ops(h)
    (want_grad,) = torch.autograd.grad((want * weights).sum(), h)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        got = kernels.gate_sum(h, src, n, k)
        (got_grad,) = torch.autograd.grad((got * weights).sum(), h)
        torch.testing.assert_close(got, want, rtol=2e-6, atol=2e-6)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-5, atol=1e-6)
        torch.set_num_threads(2)
        assert kernels.gate_sum(h, src, n, k) is None
    finally:
        torch.set_num_threads(before)
    if not regular:
        empty = torch.bincount(src, minlength=n) == 0
        assert empty.any() and torch.all(got[empty] == 0)
    assert kernels.gate_sum(h, src.flip(0), n) is None  # edges not grouped by atom: torch's ops


def test_a_training_step_with_the_kernel_equals_one_with_torch(monkeypatch):
    """One convolution's training forward and parameter gradients, kernel or torch's ops."""
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # where the training kernel applies
    calls = []
    monkeypatch.setattr(kernels._GateSum, "apply", lambda *a, real=kernels._GateSum.apply: calls.append(1) or real(*a))
    torch.manual_seed(5)
    src, dst, d = graph(60)
    v, u = torch.randn(60, 16), GaussianExpansion(8.0, 0.2)(d)
    conv = ConvLayer(16, 41).train()

    def step():
        conv.zero_grad()
        out = conv(v, u, src, dst, 12)
        (out * torch.linspace(-1, 1, 16)).sum().backward()
        return out.detach(), [p.grad.clone() for p in conv.parameters()]

    fused_out, fused_grads = step()
    assert calls == [1]  # the kernel made the messages
    monkeypatch.setattr(kernels, "gate_sum", lambda *args: None)
    torch_out, torch_grads = step()
    torch.testing.assert_close(fused_out, torch_out, rtol=1e-5, atol=1e-5)
    for g, w in zip(fused_grads, torch_grads):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
