"""`screen` as a user gets it from a wheel: not editable, run outside the repo, with no ../shared
beside it. The package must carry its model, reference table and atom features, and a run must
say which reference phases it ranked against."""
import os
import site
import subprocess
import sys
import venv
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_an_installed_wheel_runs_the_default_job_against_its_shipped_tables(tmp_path):
    wheels = tmp_path / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(wheels), str(ROOT)], check=True, capture_output=True)
    wheel, = wheels.glob("screen-*.whl")
    # the dependencies come from this interpreter's site-packages; screen itself only from the wheel
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    # without PYTHONPATH: the checkout on it (its screen.egg-info) would pass for screen installed
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MP_API_KEY")}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True, env=env)
    see_site_packages_of_this_interpreter(python)  # after: pip would take this interpreter's screen for the wheel's
    work = tmp_path / "elsewhere"  # no repo, no ../shared: only what the wheel holds
    work.mkdir()
    where = subprocess.run([str(python), "-c", "import screening, cli; print(screening.__file__, cli.__file__)"],
                           cwd=work, env=env, capture_output=True, text=True, check=True).stdout
    assert str(ROOT) not in where and str(env_dir) in where  # the installed copy, not the checkout

    r = subprocess.run([str(env_dir / "bin" / "screen"), "run", "--query", "Li-Fe-O", "--workers", "1",
                        "--threads", "1", "--dashboard", ":0", "--out", "out", "--cache", "cache"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reference phases: the table shipped with screen" in r.stdout
    table = pd.read_csv(work / "out" / "results.csv")
    assert len(table) > 10 and table.pred_e_above_hull.notna().all()
    assert (table.pred_e_above_hull_std > 0).all()  # the bundled ensemble, not one member


def see_site_packages_of_this_interpreter(python: Path) -> None:
    """Make the running interpreter's installed packages importable in the venv of `python`.

    Not system_site_packages: from inside a venv (a user's `python -m venv`), that exposes the
    *base* interpreter's site-packages, not the venv's. A .pth file of plain folders adds them
    after the new venv's own site-packages, so the wheel installed there wins, and the folders'
    own .pth files (such as the checkout's editable install) are not run."""
    folders = [*site.getsitepackages(), *([site.getusersitepackages()] if site.ENABLE_USER_SITE else [])]
    target = subprocess.run([str(python), "-I", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                            capture_output=True, text=True, check=True).stdout.strip()
    lines = [f for f in dict.fromkeys(folders) if os.path.isdir(f) and Path(f).resolve() != Path(target).resolve()]
    (Path(target) / "zz-screen-test-host-packages.pth").write_text("".join(f + "\n" for f in lines))
