import numpy as np
import pytest
import torch

from screening.batch import atom_budget_chunks, collate
from screening.featurize import featurize
from screening.checkpoint import default_model_path
from screening.ensemble import load_model
from screening.model import ConvLayer, MTCGCNN, ModelSettings, neighbors_per_atom
from screening.predict import predict_graphs
from tests.helpers import mp_structures, rocksalt, warmed_model
from tests.reference import masked_multitask_mse, unfactorized_conv


@pytest.fixture(scope="module")
def structures():
    s, _ = mp_structures(12)
    return s


def test_batch_is_a_disjoint_union_with_offsets():
    g1, g2 = featurize(rocksalt()), featurize(rocksalt() * (2, 1, 1))
    b = collate([g1, g2])
    assert b.atomic_numbers.shape[0] == g1.n_atoms + g2.n_atoms
    assert int(b.src[g1.n_edges:].min()) == g1.n_atoms  # second graph shifted
    assert b.crystal.tolist() == [0] * g1.n_atoms + [1] * g2.n_atoms
    sizes = [5, 5, 5, 20, 1]
    assert list(atom_budget_chunks(range(5), 10, size=sizes.__getitem__)) == [[0, 1], [2], [3], [4]]


def test_predictions_invariant_to_atom_order_and_supercell(structures, kernel):
    graphs = [featurize(s) for s in structures]
    model = warmed_model(graphs)
    base = predict_graphs(model, graphs)
    rng = np.random.default_rng(1)
    shuffled = []
    for s in structures:
        perm = rng.permutation(len(s))
        shuffled.append(featurize(s.__class__.from_sites([s[i] for i in perm])))
    supercells = [featurize(s * (2, 2, 2)) for s in structures]
    np.testing.assert_allclose(predict_graphs(model, shuffled), base, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(predict_graphs(model, supercells), base, rtol=1e-4, atol=1e-4)
    assert np.ptp(base, axis=0).min() > 1e-3  # not a constant function


def test_batching_does_not_change_predictions(structures, kernel):
    graphs = [featurize(s) for s in structures]
    model = warmed_model(graphs)
    one_by_one = np.concatenate([predict_graphs(model, [g]) for g in graphs])
    np.testing.assert_allclose(predict_graphs(model, graphs, max_atoms=10**6), one_by_one, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernel", ["c"], indirect=True)  # torch's ops split each op between threads instead
def test_batches_on_several_threads_give_the_same_numbers(structures, kernel):
    """With the C kernel on a CPU of 2 torch threads, batches run side by side, one thread each: bit
    for bit the one-thread predictions, every batch filled in, and torch's thread setting as it was."""
    from screening.predict import predict_graphs_many

    graphs = [featurize(s) for s in structures] * 3
    models = [warmed_model(graphs[:12]), warmed_model(graphs[:12], seed=1)]
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        want = predict_graphs_many(models, graphs, max_atoms=40)
        torch.set_num_threads(2)
        got = predict_graphs_many(models, graphs, max_atoms=40)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
    assert len(list(atom_budget_chunks(range(len(graphs)), 40, size=lambda i: graphs[i].n_atoms))) > 4
    for w, g in zip(want, got):
        assert np.array_equal(w, g) and np.isfinite(g).all()
    assert not np.array_equal(got[0], got[1])


def test_masked_multitask_loss_matches_hand_computation():
    pred = torch.tensor([[1.0, 2.0], [3.0, 0.0], [0.0, 1.0]])
    target = torch.tensor([[0.0, float("nan")], [1.0, 2.0], [float("nan"), float("nan")]])
    # task 0: crystals 0,1 -> (1-0)^2, (3-1)^2 -> mean 2.5 ; task 1: crystal 1 -> (0-2)^2 = 4
    assert float(masked_multitask_mse(pred, target)) == pytest.approx((2.5 + 4.0) / 2)
    assert float(masked_multitask_mse(pred, target, [2.0, 0.5])) == pytest.approx((2 * 2.5 + 0.5 * 4) / 2)
    # a task with no labels contributes zero, and its gradient is zero
    p = pred.clone().requires_grad_(True)
    masked_multitask_mse(p, torch.tensor([[0.0, float("nan")]] * 3)).backward()
    assert torch.all(p.grad[:, 1] == 0) and torch.all(torch.isfinite(p.grad))


def test_factorized_convolution_equals_plain_one(kernel, one_thread):
    """The convolution as the model computes it (factorized, batch norm folded at inference, the
    C kernel or torch's ops; on one thread the C loops also train) against the textbook form."""
    torch.manual_seed(0)
    conv = ConvLayer(16, 41)
    with torch.no_grad():  # batch norm that is not the identity, so eval mode's folding is tested
        for p in (conv.bn_edge, conv.bn_sum):
            p.weight.uniform_(0.5, 2), p.bias.normal_(), p.running_mean.normal_(), p.running_var.uniform_(0.2, 3)
    n, k = 30, 12
    v, u = torch.randn(n, 16), torch.rand(n * k, 41)
    csr = torch.arange(n).repeat_interleave(k)  # every atom k neighbours: the reshape path
    for src, kk in ((torch.randint(0, n, (n * k,)), None), (csr, k)):
        assert neighbors_per_atom(src, n) == kk
        dst = torch.randint(0, n, (n * k,))
        for mode in (conv.train, conv.eval):
            mode()
            fast_v, plain_v = v.clone().requires_grad_(), v.clone().requires_grad_()
            fast, plain = conv(fast_v, u, src, dst, kk), unfactorized_conv(conv, plain_v, u, src, dst)
            torch.testing.assert_close(fast, plain, rtol=1e-5, atol=1e-5)
            (fast ** 2).sum().backward()
            (plain ** 2).sum().backward()
            # Each element of v's gradient is a sum over edges (an atom's own and those that
            # gather it; in training also batch norm's sums over all E edges) of terms up to the
            # size S of the largest element, added in another order by each form (and by torch's
            # AVX-512 or AVX2 kernels, as the CPU has). Float32 rounding errors of a sum of E such
            # terms grow like sqrt(E) * u * S (u = 2^-24), whatever the size of the element itself:
            # an atol of 1e-5 failed by 1.7e-5 = 1.6 u * S on AVX-512. A wrong term differs by ~S.
            scale = float(plain_v.grad.abs().max())
            tolerance = (n * k) ** 0.5 * 2.0 ** -24 * scale
            torch.testing.assert_close(fast_v.grad, plain_v.grad, rtol=0, atol=tolerance)
        with torch.no_grad():  # eval mode without autograd: the in-place inference path
            inference = conv(v, u, src, dst, kk)
            assert not inference.requires_grad
            torch.testing.assert_close(inference, unfactorized_conv(conv, v, u, src, dst), rtol=1e-5, atol=1e-5)
        with torch.enable_grad():
            # the numbers of the autograd path (float32 rounding allowed)
            torch.testing.assert_close(inference, conv(v, u, src, dst, kk).detach(), rtol=1e-6, atol=1e-7)


def textbook_embedding(model, batch):
    """crystal_embedding as the model computed it before its speed work: the expansion
    without clamping, every convolution in its plain form (batch norm applied, index_add_ sums)."""
    v = model.embedding(model.atom_features[batch.atomic_numbers])
    u = torch.exp(-((batch.distances[:, None] - model.expand.centers) ** 2) / model.expand.step ** 2)
    for conv in model.convs:
        v = unfactorized_conv(conv, v, u, batch.src, batch.dst)
    pooled = torch.zeros(batch.n_crystals, v.shape[1]).index_add_(0, batch.crystal, v)
    return pooled / torch.bincount(batch.crystal, minlength=batch.n_crystals)[:, None]


def test_shipped_ensemble_predicts_as_the_textbook_model(kernel, monkeypatch):
    """The fast paths (folded batch norm, reshape sums, clamped expansion) change no prediction
    of the shipped members beyond float32 rounding, on 300 real crystals."""
    structures, _ = mp_structures(300)
    graphs = [featurize(s) for s in structures]
    for member in load_model(default_model_path()).members:
        model = member.model
        fast = predict_graphs(model, graphs, max_atoms=4000)
        monkeypatch.setattr(model, "crystal_embedding", lambda b, m=model: textbook_embedding(m, b))
        plain = predict_graphs(model, graphs, max_atoms=4000)
        monkeypatch.undo()
        assert np.abs(fast - plain).max() < 1e-4, np.abs(fast - plain).max()


def test_normalizer_ignores_missing_targets():
    model = MTCGCNN(ModelSettings(["a", "b"]))
    model.set_normalizer(np.array([[1.0, np.nan], [3.0, 4.0], [np.nan, 8.0]]))
    np.testing.assert_allclose(model.target_mean.numpy(), [2.0, 6.0])
    np.testing.assert_allclose(model.target_std.numpy(), [1.0, 2.0])


def test_graphset_batches_equal_collated_graphs_in_any_order(structures):
    from screening.graphset import GraphSet

    graphs = [featurize(s) for s in structures]
    gs = GraphSet.from_graphs(graphs, np.arange(len(graphs) * 3, dtype=np.float32).reshape(-1, 3))
    idx = [7, 0, 11, 3, 3]
    a, b = gs.batch(idx), collate([graphs[i] for i in idx], gs.targets[idx])
    for name in ("atomic_numbers", "src", "dst", "distances", "crystal", "targets"):
        assert torch.equal(getattr(a, name), getattr(b, name)), name
    # subset and concat keep every graph intact
    both = GraphSet.concat([gs.subset([5, 1]), gs.subset([9])])
    assert [both.graph(i).equals(graphs[j]) for i, j in enumerate([5, 1, 9])] == [True] * 3
    assert both.ids == ["5", "1", "9"]
