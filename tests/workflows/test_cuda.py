"""`screen run --device cuda`: where a CUDA GPU is visible, the run infers there and its predictions
equal a CPU run's within 1e-3 (eV, eV/atom); elsewhere the test skips and says why."""
import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from cli import app
from tests.helpers import DATA

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU visible to torch on this machine")


def _run(tmp_path, device):
    out = tmp_path / device
    r = CliRunner().invoke(app, ["run", "--query", "Li-Fe-O", "--source", f"local:{DATA}", "--device", device,
                                 "--workers", "1", "--dashboard", ":0", "--cache", str(tmp_path / f"c-{device}"),
                                 "--out", str(out)])
    assert r.exit_code == 0, r.output
    return pd.read_csv(out / "results.csv").set_index("id").sort_index()


def test_cuda_run_predicts_as_the_cpu_does(tmp_path):
    cpu, gpu = _run(tmp_path, "cpu"), _run(tmp_path, "cuda")
    assert list(gpu.index) == list(cpu.index) and len(cpu) > 20
    columns = [c for c in cpu.columns if c.startswith("pred_") and pd.api.types.is_float_dtype(cpu[c])]
    assert "pred_formation_energy_per_atom" in columns
    assert (gpu[columns] - cpu[columns]).abs().max().max() < 1e-3
