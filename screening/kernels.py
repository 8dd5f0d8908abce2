"""The edge messages sum_j sigmoid(h_f) * softplus(h_s) in fused CPU loops (kernels.c).

Why: on a CPU, torch spends most of a member's inference on the (E, 2A) edge rows:
the product u W_u, two gathers and an add to build h, then sigmoid, softplus (an exp
and a log1p each), a product and the sum over neighbours, each a pass over memory.
kernels.c does all of it in one pass per atom, multiplies each edge's Gaussian row only
where it is not ~0, and vectorizes exp as a polynomial. FusedOps.inference calls
`gated_sum`. The result equals torch's to float32 rounding: exp within 1.1 ulps, softplus's log1p within 2.6, Gaussians below e^-30
of an edge's peak left out, and sums taken in another order.

Training cannot fuse the product (batch norm needs the whole of h first), but `gate_sum`
takes h after it: the messages and their sum in one pass, their gradient in one more,
where torch's ops make eight passes and keep four (E, A) tensors (FusedOps.autograd).

Which path a process takes is decided once, by `backend()`, on its first use: the C loops where
kernels.c builds and loads (SCREEN_KERNEL=auto, the default; =c insists, =torch never builds;
screening/kernel_build.py compiles it once per machine into a cache), else torch's ops, with one
warning saying why. The model asks `ops(device)` for that path (FusedOps or TorchOps); tensors on
any other device take torch's ops. Where the C loops cannot take a call -- edges not grouped by atom,
an index out of range, several torch threads in training -- `gated_sum` and `gate_sum` return None
and FusedOps uses torch's ops for that call.
"""
from __future__ import annotations

import ctypes
import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, Optional

import torch
import torch.nn.functional as F

from screening import kernel_build
from screening.errors import ScreenError

log = logging.getLogger(__name__)

BAND = 11  # Gaussian centers that enter an edge's product: its nearest one and 5 either side
MAX_WIDTH = 8192  # 2A: the kernel keeps one edge's h (2A floats) on its stack
MIN_ATOMS_PER_THREAD = 500  # fewer atoms a thread, and handing them over costs more than it saves


class Backend(NamedTuple):
    """The path this process's CPU inference and training take: "c" or "torch", and why torch."""
    name: str
    reason: str = ""
    library: Optional[str] = None  # the compiled file (c)
    compiled: bool = False  # whether this process compiled it (else it came from the cache)

    def __str__(self) -> str:
        return f"{self.name} ({self.reason})" if self.reason else self.name


def neighbour_sum(messages: torch.Tensor, src: torch.Tensor, n_atoms: int, k=None) -> torch.Tensor:
    """(n_atoms, A): each atom's sum of its edges' messages (k: see model.neighbors_per_atom)."""
    if k:  # CSR rows of equal length: the sum over neighbours is a plain reduction
        return messages.view(-1, k, messages.shape[1]).sum(1)
    return messages.new_zeros(n_atoms, messages.shape[1]).index_add_(0, src, messages)


class _Library:
    """The process's decision (a Backend) and, for "c", the loaded library; made once, on first use."""

    def __init__(self):
        self.lock = threading.Lock()
        self.backend: Optional[Backend] = None
        self.lib = None
        self.cpu: Optional[TorchOps] = None  # the path CPU tensors take: FusedOps with the library, else TorchOps
        self.pool = None

    def get(self):
        if self.backend is None:
            with self.lock:
                if self.backend is None:
                    self.lib, backend = _decide()
                    self.cpu = FusedOps() if self.lib is not None else TORCH
                    self.backend = backend  # last: another thread reads `cpu` once it sees a backend
        return self.lib

    def threads(self, n: int) -> ThreadPoolExecutor:
        with self.lock:
            if self.pool is None or self.pool._max_workers < n:
                self.pool = ThreadPoolExecutor(n, thread_name_prefix="screen-kernel")
            return self.pool


def _decide():
    """(library or None, Backend) from SCREEN_KERNEL and what this machine can build."""
    mode = kernel_build.mode()
    if mode == "torch":
        return None, Backend("torch", f"{kernel_build.ENV}=torch")
    try:
        simd = torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
        lib, path, compiled = kernel_build.load(simd)
        pointer, size = ctypes.c_void_p, ctypes.c_int64
        lib.gated_messages.argtypes = [pointer, size, pointer, size] + [pointer] * 6 + [size] * 3
        lib.gate_sum_forward.argtypes = [pointer] * 3 + [size] * 3
        lib.gate_sum_backward.argtypes = [pointer] * 4 + [size] * 3
        for f in (lib.gated_messages, lib.gate_sum_forward, lib.gate_sum_backward):
            f.restype = None
    except kernel_build.Unavailable as e:
        if mode == "c":
            raise ScreenError(f"{kernel_build.ENV}=c: the C kernel cannot be used: {e}") from None
        log.warning("screen: no C kernel: %s; the model uses torch's slower ops (%s=torch: without this warning)",
                    e, kernel_build.ENV)
        return None, Backend("torch", str(e))
    return lib, Backend("c", library=str(path), compiled=compiled)


_library = _Library()


def backend() -> Backend:
    """This process's path, decided on the first call (which may compile kernels.c; module doc)."""
    _library.get()
    return _library.backend


def ops(device) -> "TorchOps":
    """The path the model's edge work takes for tensors on `device`: on a CPU the one this process
    chose (decided once, on first use, as backend()), on any other device torch's ops."""
    if torch.device(device).type != "cpu":
        return TORCH
    _library.get()
    return _library.cpu


def inference_path(device) -> str:
    """What runs the model's edge work on `device`: "c", or "torch (why)"."""
    kind = torch.device(device).type
    return str(backend()) if kind == "cpu" else f"torch ({kind})"


def _offsets(src: torch.Tensor, n_atoms: int, k) -> Optional[torch.Tensor]:
    """start (n_atoms + 1,): atom i's edges are rows start[i] .. start[i+1]-1; None if edges are not grouped by atom."""
    if k:
        return torch.arange(0, (n_atoms + 1) * k, k, dtype=torch.int64)
    if src.numel() and (int(src[0]) < 0 or int(src[-1]) >= n_atoms or bool((src[1:] < src[:-1]).any())):
        return None
    start = torch.zeros(n_atoms + 1, dtype=torch.int64)
    torch.cumsum(torch.bincount(src, minlength=n_atoms), 0, out=start[1:])
    return start


def gated_sum(u, w_u, p, q, src, dst, k=None, band=None) -> Optional[torch.Tensor]:
    """(N, A): sum over each atom's edges of sigmoid(g) * softplus(s), [g | s] = u W_u^T + p[src] + q[dst],
    from u (E, B), W_u (2A, B), p and q (N, 2A), all float32; None where the fused kernel
    does not apply (module doc). band (E,): the first of the BAND columns of u that enter
    each edge's product (GaussianExpansion.band_starts); None: all of them."""
    n, width = p.shape
    if (u.device.type != "cpu" or width % 2 or width > MAX_WIDTH or q.shape != p.shape
            or w_u.shape != (width, u.shape[1]) or any(t.dtype != torch.float32 for t in (u, w_u, p, q))):
        return None
    lib = _library.get()
    if lib is None:
        return None
    start = _offsets(src, n, k)
    if start is None:
        return None
    if dst.numel():  # an index outside the atoms would read outside q: torch's ops raise instead
        low, high = torch.aminmax(dst)
        if int(low) < 0 or int(high) >= n:
            return None
    n_centers = u.shape[1]
    if band is not None and n_centers > BAND:  # a column outside u would be read outside it
        band = band.to(torch.int64).contiguous()
        if band.shape != (u.shape[0],):
            return None
        if band.numel():
            low, high = torch.aminmax(band)
            if int(low) < 0 or int(high) > n_centers - BAND:
                return None
    else:
        band = None
    u, w, p, q = (t.contiguous() for t in (u, w_u.T, p, q))
    dst = dst.to(torch.int64).contiguous()
    out = torch.empty(n, width // 2)
    pointers = [u.data_ptr(), n_centers, band.data_ptr() if band is not None else None, BAND] + [
        t.data_ptr() for t in (w, p, q, dst, start, out)]
    _over_atoms(lib.gated_messages, pointers, n, width // 2)
    return out


def _over_atoms(function, pointers: list, n: int, a: int) -> None:
    """function(*pointers, a0, a1, a) over atoms [0, n), split among torch's threads where there are enough."""
    threads = min(torch.get_num_threads(), n // MIN_ATOMS_PER_THREAD)
    if threads <= 1:
        function(*pointers, 0, n, a)
        return
    # ctypes lets go of the GIL during the call: atom ranges run in parallel
    bounds = [n * j // threads for j in range(threads + 1)]
    jobs = [_library.threads(threads).submit(function, *pointers, lo, hi, a) for lo, hi in zip(bounds[:-1], bounds[1:])]
    for job in jobs:
        job.result()


class _GateSum(torch.autograd.Function):
    """gate_sum_forward / gate_sum_backward of kernels.c, for training."""

    @staticmethod
    def forward(ctx, h, start):
        n, a = start.numel() - 1, h.shape[1] // 2
        out = h.new_empty(n, a)
        _over_atoms(_library.lib.gate_sum_forward, [h.data_ptr(), start.data_ptr(), out.data_ptr()], n, a)
        ctx.save_for_backward(h, start)
        return out

    @staticmethod
    def backward(ctx, dout):
        h, start = ctx.saved_tensors
        dout = dout.contiguous()
        dh = torch.empty_like(h)
        _over_atoms(_library.lib.gate_sum_backward, [h.data_ptr(), start.data_ptr(), dout.data_ptr(), dh.data_ptr()],
                    start.numel() - 1, h.shape[1] // 2)
        return dh, None


def gate_sum(h: torch.Tensor, src: torch.Tensor, n_atoms: int, k=None) -> Optional[torch.Tensor]:
    """(N, A): each atom's sum over its edges of sigmoid(g) * softplus(s), [g | s] = h (E, 2A), with
    autograd (training): two passes over h where torch's ops make eight and keep four (E, A) tensors
    for the backward. None where the kernel does not apply (as gated_sum, and on more than one
    torch thread; then torch's ops)."""
    if h.device.type != "cpu" or h.dtype != torch.float32 or h.dim() != 2 or h.shape[1] % 2 \
            or h.shape[0] != src.numel() or _library.get() is None:
        return None
    if torch.get_num_threads() > 1:  # torch's OpenMP ops share several threads better than the loop's
        return None                  # split of atoms (benchmarks/model_speed.py measures both)
    start = _offsets(src, n_atoms, k)
    if start is None:
        return None
    return _GateSum.apply(h.contiguous(), start)


def edge_rows(v, u, src, dst, k, w_i, b, w_j, w_u):
    """h = v_i W_i + v_j W_j + u_ij W_u + b for every edge (E, rows of the maps).

    index_select, not v[dst]: its backward is one index_add_, several times faster on
    CPU than the accumulating index_put_ that fancy indexing uses. Then addmm_ and add_
    add u W_u and v_i W_i into the gathered rows in place: no new edge-sized tensor, and
    none of these ops needs its output for the backward pass (but see the view below).
    """
    h = F.linear(v, w_j).index_select(0, dst).addmm_(u, w_u.T)
    if k:  # atom i's edges are rows i*k ... i*k + k-1: broadcast v_i W_i rather than gather it
        rows, p = h.view(-1, k, h.shape[1]), F.linear(v, w_i, b)[:, None]
        # out of place under autograd: in place on a view of h, its backward copies all of h's gradient
        return (rows + p if torch.is_grad_enabled() else rows.add_(p)).view(-1, h.shape[1])
    return h.add_(F.linear(v, w_i, b).index_select(0, src))


class TorchOps:
    """The edge messages' sum in torch's ops: on every device, and on a CPU without the C kernel."""

    fused = False

    def inference(self, v, u, src, dst, k, band, maps) -> torch.Tensor:
        """(N, A) from the atom vectors and the linear maps (W_i, b, W_j, W_u), without autograd.

        The gate and core halves of h are built as two contiguous (E, A) tensors and transformed
        in place, so the edge work allocates 2 edge tensors instead of 4: fresh edge-sized tensors
        come from the allocator as new pages, whose faults on a CPU cost about as much as the
        arithmetic, and a strided half of one (E, 2A) tensor is slower to transform than a
        contiguous one. band is the fused kernel's only."""
        w_i, b, w_j, w_u = maps
        a = w_i.shape[0] // 2
        gate, core = (edge_rows(v, u, src, dst, k, w_i[rows], b[rows], w_j[rows], w_u[rows])
                      for rows in (slice(0, a), slice(a, 2 * a)))
        return neighbour_sum(gate.sigmoid_().mul_(F.softplus(core)), src, v.shape[0], k)

    def autograd(self, h, src, n_atoms: int, k=None) -> torch.Tensor:
        """(N, A) from the edge rows h (E, 2A), with autograd (training)."""
        gate, core = h.chunk(2, dim=1)
        return neighbour_sum(torch.sigmoid(gate) * F.softplus(core), src, n_atoms, k)


class FusedOps(TorchOps):
    """The C loops of kernels.c (CPU tensors); a call they cannot take (module doc) goes to torch's ops."""

    fused = True

    def inference(self, v, u, src, dst, k, band, maps) -> torch.Tensor:
        w_i, b, w_j, w_u = maps
        summed = gated_sum(u, w_u, F.linear(v, w_i, b), F.linear(v, w_j), src, dst, k, band)
        return summed if summed is not None else super().inference(v, u, src, dst, k, band, maps)

    def autograd(self, h, src, n_atoms: int, k=None) -> torch.Tensor:
        summed = gate_sum(h, src, n_atoms, k)
        return summed if summed is not None else super().autograd(h, src, n_atoms, k)


TORCH = TorchOps()
