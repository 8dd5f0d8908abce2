"""Compiling kernels.c once per machine, and which path the model takes: SCREEN_KERNEL.

SCREEN_KERNEL=auto (the default) uses the C kernel where it builds and loads, else torch's ops
with one warning saying why; =c fails with a one-line error where it cannot; =torch never builds.

The shared library is built once into a cache keyed by the source, the flags, the compiler
(its version and target) and the CPU architecture: $SCREEN_KERNEL_CACHE, else
$XDG_CACHE_HOME/screen/kernels, else ~/.cache/screen/kernels. Each build goes to a file of its
own and is renamed into place, so processes building at once never see half a file. A home
shared by nodes of different CPUs keeps one library per key. Where the cache cannot be written
the library is built in a temporary folder for this process only; where no folder allows
executing a mapped file (a noexec /tmp) it is loaded from memory (Linux's memfd).

The flags pin what the compiler would otherwise choose: -ffp-contract=off (no fused multiply-add
where the source has a product and a sum: clang's default contracts them, and that changes
outputs in the last bit), no fast-math, C99. With these, every compiler and instruction set
performs the same IEEE operations, so predictions are the same bit for bit (tests/screening/
test_kernels.py compares the builds this machine can make). This module imports neither torch
nor the compiled library's users: the client of `screen run` checks SCREEN_KERNEL with it.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shlex
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import List, Optional, Tuple

from screening.errors import ScreenError

ENV, CACHE_ENV = "SCREEN_KERNEL", "SCREEN_KERNEL_CACHE"
MODES = ("auto", "c", "torch")
SOURCE = Path(__file__).with_name("kernels.c")
# -fno-trapping-math lets the compiler vectorize the clamps and the sign tests, -fno-math-errno
# the rest; neither changes a result. -fno-fast-math and -ffp-contract=off (after it: clang's
# -fno-fast-math resets contraction to its default) pin the arithmetic (module doc).
FLAGS = ["-O3", "-std=c99", "-fno-fast-math", "-ffp-contract=off", "-fno-trapping-math", "-fno-math-errno",
         "-shared", "-fPIC"]
X86_SIMD = ["-mavx2", "-mfma"]  # wider registers only: with contraction off, no FMA is emitted
COMPILE_TIMEOUT_S = 120


class Unavailable(Exception):
    """Why the C kernel cannot be used here (one line)."""


def mode() -> str:
    """SCREEN_KERNEL's value; anything but auto, c or torch is a one-line error."""
    value = os.environ.get(ENV, "").strip().lower() or "auto"
    if value not in MODES:
        raise ScreenError(f"{ENV}={os.environ.get(ENV)}: choose {', '.join(MODES)}")
    return value


def flags(simd: bool) -> List[str]:
    """The compiler flags for this CPU: AVX2 registers where it has them (x86-64), else the generic code."""
    return FLAGS + (X86_SIMD if simd and platform.machine().lower() in ("x86_64", "amd64") else [])


def compiler() -> Optional[List[str]]:
    """The C compiler's command: $CC (may hold arguments, e.g. "ccache gcc"), else cc, gcc or clang on PATH."""
    if os.environ.get("CC", "").strip():
        return shlex.split(os.environ["CC"])
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return [found]
    return None


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "screen" / "kernels"


def _compiler_identity(cc: List[str]) -> str:
    """The compiler's version and target, for the cache key; Unavailable where it does not run."""
    out = []
    for option in ("--version", "-dumpmachine"):
        try:
            r = subprocess.run([*cc, option], capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError) as e:
            raise Unavailable(f"the C compiler {shlex.join(cc)} does not run ({e})") from None
        if r.returncode:
            raise Unavailable(f"the C compiler {shlex.join(cc)} does not run ({_first_line(r.stderr) or 'exit %d' % r.returncode})")
        out.append(r.stdout.strip())
    return "\n".join(out)


def key(cc: List[str], build_flags: List[str]) -> str:
    h = hashlib.sha256(SOURCE.read_bytes())
    for part in (" ".join(build_flags), _compiler_identity(cc), platform.machine()):
        h.update(b"\0" + part.encode())
    return h.hexdigest()[:20]


def load(simd: bool) -> Tuple[ctypes.CDLL, Path, bool]:
    """(the library, its file, whether this call compiled it); Unavailable with the reason where it cannot be had."""
    cc = compiler()
    if cc is None:
        raise Unavailable("no C compiler (cc, gcc, clang or $CC)")
    build_flags = flags(simd)
    name = f"kernels-{key(cc, build_flags)}.so"
    folder = cache_dir()
    target = folder / name
    if target.exists():
        try:
            return _open(target), target, False
        except Unavailable:
            pass  # damaged, or a folder that cannot map code: build again below
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if not os.access(folder, os.W_OK):
            raise PermissionError(f"{folder}: not writable")
        private = None
    except OSError:  # this process's own folder, as a last resort (removed once loaded)
        try:
            folder = private = Path(tempfile.mkdtemp(prefix="screen-kernel-"))
        except OSError as e:
            raise Unavailable(f"no folder to build the kernel in ({cache_dir()} and {tempfile.gettempdir()}: "
                              f"{e.strerror or e})") from None
        target = folder / name
    try:
        _compile(cc, build_flags, target)
        return _open(target), target, True
    finally:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)  # a loaded library stays mapped


def _compile(cc: List[str], build_flags: List[str], target: Path) -> None:
    """Compile into a file of this build's own (unique also between hosts sharing the folder), then
    rename it to `target`: atomic, so another process sees the whole library or none."""
    part = None
    try:
        fd, part = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
        os.close(fd)
        r = subprocess.run([*cc, *build_flags, "-o", part, str(SOURCE)], capture_output=True, text=True,
                           timeout=COMPILE_TIMEOUT_S)
        if r.returncode:
            raise Unavailable(f"compiling {SOURCE.name} with {shlex.join(cc)} failed "
                              f"({_first_line(r.stderr) or 'exit %d' % r.returncode})")
        os.chmod(part, 0o755)  # as the compiler would have made it (mkstemp's file is private)
        os.replace(part, target)
        part = None
    except (OSError, subprocess.SubprocessError) as e:
        raise Unavailable(f"compiling {SOURCE.name} with {shlex.join(cc)} failed ({e})") from None
    finally:
        if part is not None:
            Path(part).unlink(missing_ok=True)


def _open(path: Path) -> ctypes.CDLL:
    """Load the library; from memory where its folder may not map code (noexec)."""
    try:
        return ctypes.CDLL(str(path))
    except OSError as e:
        first = e
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("screen-kernels")
        try:
            with open(fd, "wb", closefd=False) as f:
                f.write(path.read_bytes())
            return ctypes.CDLL(f"/proc/self/fd/{fd}")
        except OSError:
            pass
        finally:
            os.close(fd)  # the mapping stays
    raise Unavailable(f"cannot load the compiled kernel {path} ({_first_line(str(first))})")


def _first_line(text: str) -> str:
    """The line of a compiler's message that says what went wrong (its first error), else its first."""
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
