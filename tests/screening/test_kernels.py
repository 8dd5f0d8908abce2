"""The fused kernel (screening/kernels.c) against torch's ops, and how a process gets it
(screening/kernel_build.py): SCREEN_KERNEL, the per-machine cache, builds that give the same bits.

Tests of the C loops themselves take `kernel` with "c" only: where it cannot be built they skip
and say why (the model's tests run on both paths, tests/screening/test_model.py)."""
import ctypes
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from screening import kernel_build, kernels
from screening.errors import ScreenError
from screening.model import ConvLayer, GaussianExpansion
from tests.reference import unfactorized_conv

ROOT = Path(__file__).resolve().parents[2]
c_only = pytest.mark.parametrize("kernel", ["c"], indirect=True)


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


@c_only
@pytest.mark.parametrize("atom_len", [8, 64])
@pytest.mark.parametrize("regular", [True, False])
def test_fused_messages_equal_torch(atom_len, regular, kernel):
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


@c_only
def test_extreme_and_missing_values_as_torch(kernel):
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


@c_only
def test_threads_split_atoms_without_changing_a_bit(monkeypatch, kernel):
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


@c_only
def test_what_the_kernel_cannot_take_goes_to_torch(kernel):
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


@c_only
@pytest.mark.parametrize("regular", [True, False])
def test_training_gate_sum_and_its_gradient_equal_torch(regular, monkeypatch, kernel):
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


@c_only
def test_a_training_step_with_the_kernel_equals_one_with_torch(monkeypatch, kernel):
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


# ---- how a process gets the kernel (screening/kernel_build.py) ---------------------------------

def decide(monkeypatch, **env):
    """The decision a new process would make with `env` set (None: unset)."""
    for name, value in env.items():
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    monkeypatch.setattr(kernels, "_library", kernels._Library())
    return kernels.backend()


def test_screen_kernel_chooses_the_path_and_refuses_anything_else(monkeypatch, tmp_path):
    monkeypatch.setenv("SCREEN_KERNEL_CACHE", str(tmp_path / "cache"))
    for bad in ("fast", "1", "c,torch"):
        monkeypatch.setenv("SCREEN_KERNEL", bad)
        with pytest.raises(ScreenError) as e:
            kernel_build.mode()
        assert str(e.value) == f"SCREEN_KERNEL={bad}: choose auto, c, torch"
        with pytest.raises(ScreenError):
            decide(monkeypatch)
    assert [decide(monkeypatch, SCREEN_KERNEL=m, CC="/nonexistent/cc").name for m in ("torch", " Torch ")] == ["torch"] * 2
    assert str(kernels.backend()) == kernels.inference_path("cpu") == "torch (SCREEN_KERNEL=torch)"
    assert kernels.inference_path("cuda") == "torch (cuda)"
    assert not (tmp_path / "cache").exists()  # torch: nothing built, no compiler asked


@pytest.mark.parametrize("kernel", ["c", "torch"], indirect=True)
def test_the_model_path_is_chosen_once_per_process(monkeypatch, kernel):
    """ops(device) is the process's one decision for CPU tensors (asked again, SCREEN_KERNEL is not
    read again) and torch's ops on any other device; the model's convolution takes that path."""
    chosen = kernels.ops("cpu")
    assert chosen.fused == (kernel.name == "c") and type(chosen) is (kernels.FusedOps if chosen.fused else kernels.TorchOps)
    monkeypatch.setenv("SCREEN_KERNEL", "neither")  # read again, it would be a ScreenError
    assert kernels.ops(torch.device("cpu")) is chosen and kernels.backend() is kernel
    assert kernels.ops("meta") is kernels.TORCH and not kernels.TORCH.fused
    calls = []
    monkeypatch.setattr(kernels, "gated_sum", lambda *a: calls.append(1) or None)  # None: torch's ops take it
    src, dst, d = graph(20)
    with torch.no_grad():
        ConvLayer(8, 41).eval()(torch.randn(20, 8), GaussianExpansion(8.0, 0.2)(d), src, dst, 12)
    assert calls == ([1] if chosen.fused else [])


@pytest.mark.parametrize("compiler", ["/nonexistent/cc", "false", None])
def test_without_a_compiler_auto_warns_once_and_uses_torch_and_c_refuses(monkeypatch, caplog, tmp_path, compiler):
    """No C compiler: $CC that is not there, one that fails, or none on PATH (an empty PATH)."""
    monkeypatch.setenv("SCREEN_KERNEL_CACHE", str(tmp_path / "cache"))
    if compiler is None:
        monkeypatch.setenv("PATH", str(tmp_path))
    torch.manual_seed(3)
    conv = ConvLayer(8, 41).eval()
    src, dst, d = graph(20)
    v, u = torch.randn(20, 8), GaussianExpansion(8.0, 0.2)(d)
    with caplog.at_level(logging.WARNING, logger="screening.kernels"), torch.no_grad():
        chosen = decide(monkeypatch, SCREEN_KERNEL=None, CC=compiler)
        out = conv(v, u, src, dst, 12)
        conv(v, u, src, dst, 12)
    why = "no C compiler (cc, gcc, clang or $CC)" if compiler is None else f"the C compiler {compiler} does not run"
    assert chosen.name == "torch" and chosen.reason.startswith(why), chosen
    assert [r.levelno for r in caplog.records] == [logging.WARNING]  # one line, once per process
    assert chosen.reason in caplog.text and "\n" not in caplog.records[0].getMessage()
    torch.testing.assert_close(out, unfactorized_conv(conv, v, u, src, dst), rtol=1e-5, atol=1e-5)
    with pytest.raises(ScreenError) as e:
        decide(monkeypatch, SCREEN_KERNEL="c", CC=compiler)
    assert str(e.value) == f"SCREEN_KERNEL=c: the C kernel cannot be used: {chosen.reason}" and "\n" not in str(e.value)


def test_the_cache_lies_in_the_user_cache_folder(monkeypatch, tmp_path):
    monkeypatch.delenv("SCREEN_KERNEL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert kernel_build.cache_dir() == tmp_path / "xdg" / "screen" / "kernels"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert kernel_build.cache_dir() == tmp_path / "home" / ".cache" / "screen" / "kernels"
    monkeypatch.setenv("SCREEN_KERNEL_CACHE", str(tmp_path / "mine"))
    assert kernel_build.cache_dir() == tmp_path / "mine"


@c_only
def test_built_once_per_machine_then_loaded_from_the_cache(tmp_path, kernel):
    """Three processes starting at once on an empty cache, then a fourth: the first ones may each
    compile, but each renames a whole file into place; the fourth loads it."""
    cache = tmp_path / "kernels"
    env = {**os.environ, "SCREEN_KERNEL_CACHE": str(cache), "PYTHONPATH": str(ROOT)}
    code = "from screening import kernels; b = kernels.backend(); print(b.name, b.compiled, b.library)"

    def start():
        return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)

    first = [start() for _ in range(3)]
    said = [p.communicate(timeout=300)[0].split() for p in first]
    assert [p.returncode for p in first] == [0] * 3
    assert {name for name, _, _ in said} == {"c"} and "True" in {compiled for _, compiled, _ in said}
    (library,) = {lib for _, _, lib in said}
    assert Path(library).parent == cache
    built = Path(library).stat().st_mtime_ns
    fourth = start()
    assert fourth.communicate(timeout=300)[0].split() == ["c", "False", library]
    assert Path(library).stat().st_mtime_ns == built and list(cache.iterdir()) == [Path(library)]  # no part left


def inputs(seed=6):
    torch.manual_seed(seed)
    src, dst, d = graph(300, regular=False, seed=seed)
    expand = GaussianExpansion(8.0, 0.2)
    u, band = expand(d), expand.band_starts(d)
    # values as large as +-150: sigmoid and softplus where they flush subnormals (|x| beyond 87)
    w_u, p, q = torch.randn(128, expand.size), torch.randn(300, 128) * 30, torch.randn(300, 128) * 30
    h, dout = torch.randn(src.numel(), 128) * 40, torch.randn(300, 64)
    return src, dst, u, band, w_u, p, q, h, dout


def outputs(data):
    """What the process's kernel gives for `data`: inference (banded and whole), training sums and gradient."""
    src, dst, u, band, w_u, p, q, h, dout = data
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # where the training loops apply
    try:
        h = h.clone().requires_grad_()
        summed = kernels.gate_sum(h, src, 300)
        (grad,) = torch.autograd.grad(summed, h, dout)
    finally:
        torch.set_num_threads(before)
    return [kernels.gated_sum(u, w_u, p, q, src, dst), kernels.gated_sum(u, w_u, p, q, src, dst, band=band),
            summed.detach(), grad]


def same_bits(a, b) -> bool:
    return all(torch.equal(x.view(torch.int32), y.view(torch.int32)) for x, y in zip(a, b))


@c_only
def test_every_build_this_machine_can_make_gives_the_same_bits(monkeypatch, tmp_path, kernel):
    """Each C compiler found (gcc, clang, cc) with and without AVX2 (x86-64): the pinned flags leave
    the compiler no choice of arithmetic, so the outputs agree bit for bit. Contraction into FMA,
    which clang does by default, would change them: the pin is what makes them agree."""
    data = inputs()
    want = outputs(data)
    compilers = {}
    for name in ("gcc", "clang", "cc"):
        if shutil.which(name):
            compilers.setdefault(os.path.realpath(shutil.which(name)), name)
    simd = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    capabilities = ["AVX2", "DEFAULT"] if simd else ["DEFAULT"]
    libraries = {}
    for cc in compilers.values():
        for capability in capabilities:
            monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda c=capability: c)
            chosen = decide(monkeypatch, SCREEN_KERNEL="c", CC=cc, SCREEN_KERNEL_CACHE=str(tmp_path / "k"))
            libraries[(cc, capability)] = chosen.library
            assert same_bits(outputs(data), want), (cc, capability)
    if len(set(libraries.values())) < 2:
        pytest.skip(f"one build of kernels.c only can be made here ({libraries}): nothing to compare")
    assert len(set(libraries.values())) == len(libraries)  # each build a file of its own in the cache
    if simd:  # the same source with contraction allowed: FMAs round once where a product and a sum round twice
        monkeypatch.setattr(kernel_build, "FLAGS", [f.replace("contract=off", "contract=fast") for f in kernel_build.FLAGS])
        monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: "AVX2")
        decide(monkeypatch, SCREEN_KERNEL="c", CC=next(iter(compilers.values())), SCREEN_KERNEL_CACHE=str(tmp_path / "k"))
        assert not same_bits(outputs(data), want)


@c_only
def test_an_unwritable_cache_builds_for_the_process_alone(monkeypatch, tmp_path, kernel):
    want = outputs(inputs())
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    chosen = decide(monkeypatch, SCREEN_KERNEL="auto", SCREEN_KERNEL_CACHE=str(blocker / "kernels"))
    assert chosen.name == "c" and chosen.compiled and Path(chosen.library).parent.parent == tmp_path / "tmp"
    assert list((tmp_path / "tmp").iterdir()) == []  # its folder is gone; the process keeps the mapping
    assert same_bits(outputs(inputs()), want)


@c_only
def test_a_noexec_cache_loads_the_kernel_from_memory(monkeypatch, tmp_path, kernel):
    """A cache (or /tmp) on a filesystem mounted noexec, where a shared library cannot be mapped."""
    mount = tmp_path / "noexec"
    mount.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "noexec,size=16m", "tmpfs", str(mount)],
                       capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a noexec tmpfs here: {r.stderr.strip() or 'mount failed'}")
    try:
        want = outputs(inputs())
        chosen = decide(monkeypatch, SCREEN_KERNEL="c", SCREEN_KERNEL_CACHE=str(mount / "kernels"))
        assert chosen.name == "c" and chosen.compiled and Path(chosen.library).parent == mount / "kernels"
        with pytest.raises(OSError):
            ctypes.CDLL(chosen.library)  # as a file it does not load
        assert same_bits(outputs(inputs()), want)
        again = decide(monkeypatch, SCREEN_KERNEL="c", SCREEN_KERNEL_CACHE=str(mount / "kernels"))
        assert again.library == chosen.library and not again.compiled
    finally:
        subprocess.run(["umount", "--lazy", str(mount)], capture_output=True)  # a failed dlopen leaves a mapping of the file


def test_an_arm64_build_gives_the_same_bits_as_this_machines(tmp_path):
    """kernels.c for ARM64 (its generic vector code, FPCR's flush) run in an emulator against this
    machine's build, with kernel_build's flags: one hash of every entry point's outputs on fixed
    inputs, subnormal-flushing ones among them (tests/data/kernel_bits.c)."""
    cross = shutil.which("aarch64-linux-gnu-gcc")
    emulator = shutil.which("qemu-aarch64-static") or shutil.which("qemu-aarch64")
    native = kernel_build.compiler()
    if not (cross and emulator and native):
        pytest.skip("needs a C compiler, aarch64-linux-gnu-gcc and qemu-aarch64 (Debian: gcc-aarch64-linux-gnu, "
                    "qemu-user-static)")
    simd = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
    common = [f for f in kernel_build.flags(simd) if f not in ("-shared", "-fPIC")]

    def run(cc, flags, *runner):
        exe = tmp_path / f"bits-{len(list(tmp_path.iterdir()))}"
        subprocess.run([*cc, *flags, "-I", str(kernel_build.SOURCE.parent), str(ROOT / "tests" / "data" / "kernel_bits.c"),
                        "-o", str(exe)], check=True, capture_output=True, timeout=300)
        return subprocess.run([*runner, str(exe)], check=True, capture_output=True, text=True, timeout=300).stdout

    here = run(native, common)
    arm = run([cross], [f for f in common if f not in kernel_build.X86_SIMD] + ["-static"], emulator)
    assert here == arm and len(here.split()[0]) == 16
