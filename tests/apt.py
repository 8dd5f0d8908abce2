"""Debian packages the tests need (Slurm, Chromium), installed where apt-get runs as root, as in CI."""
from __future__ import annotations

import os
import shutil
import subprocess
from typing import Callable, Optional, Sequence


def apt_install(packages: Sequence[str], missing: Callable[[], str]) -> Optional[str]:
    """Install `packages` where `missing()` names something missing; the reason they cannot be, or
    None once `missing()` is empty."""
    if not missing():
        return None
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return f"{missing()} missing, and apt-get as root is not available to install it"
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "--no-install-recommends", *packages]
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0:  # stale package lists: update once and try again
        subprocess.run(["apt-get", "update"], env=env, capture_output=True)
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if r.returncode != 0 or missing():
        last = (r.stderr.strip().splitlines() or ["?"])[-1]
        return f"apt-get install {' '.join(packages)} failed: {last}"
    return None
