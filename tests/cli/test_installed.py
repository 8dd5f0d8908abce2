"""`screen` as a user gets it from a wheel: not editable, run outside the repo, with no ../shared
beside it. The package must carry its model, reference table and atom features, and a run must
say which reference phases it ranked against."""
import os
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
    venv.EnvBuilder(system_site_packages=True, with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "-q",
                    str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"  # no repo, no ../shared: only what the wheel holds
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MP_API_KEY")}
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
