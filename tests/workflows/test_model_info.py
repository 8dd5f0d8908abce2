"""The run's client knows its model by a torch-free description, made in a child process once and
then read from the cache until a model file changes."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from screening.ensemble import load_model
from screening.errors import ScreenError
from screening.model_info import default_model_path
from workflows.run import worker_model

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_describes_the_shipped_model_without_importing_torch(tmp_path):
    code = ("import sys, json; from workflows.run.worker_model import describe; "
            f"info = describe({str(default_model_path())!r}, {str(tmp_path / 'cache')!r}); "
            "print(json.dumps([info.to_dict(), 'torch' in sys.modules]))")
    runs = [json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                      check=True).stdout) for _ in range(2)]
    model = load_model(default_model_path())
    for info, torch_imported in runs:  # first made in a child process, then read from the cache
        assert torch_imported is False
        assert info["hash"] == model.hash and info["outputs"] == model.outputs and info["members"] == 10
        assert info["featurizer"] == model.featurizer.to_dict() and info["meta"]["std_scale"] == model.meta["std_scale"]
    assert len(list((tmp_path / "cache" / "models").glob("*.json.gz"))) == 1
    assert (tmp_path / "cache" / "CACHEDIR.TAG").is_file()  # the cache folder was claimed before the write


def test_a_changed_model_file_is_described_again_and_a_damaged_one_fails_in_one_line(model_path, tmp_path):
    cache = tmp_path / "cache"
    first = worker_model.describe(model_path, cache)
    assert first.hash == load_model(model_path).hash and first.members == 1
    copy = tmp_path / "model.pt"
    copy.write_bytes(Path(model_path).read_bytes())
    assert worker_model.describe(copy, cache).hash == first.hash
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    os.utime(copy, ns=(1, 1))  # another size or time: another stamp, so no stale description is served
    with pytest.raises(ScreenError):
        worker_model.describe(copy, cache)
    with pytest.raises(ScreenError):
        worker_model.describe(tmp_path / "missing.pt", cache)


def test_every_command_refuses_an_unknown_device_in_the_same_words_before_loading_a_model(tmp_path):
    """`screen run`'s check, `screen predict`'s and the workers' resolve_device: one message
    (model_info.check_device)."""
    from screening.predict import resolve_device
    from workflows.file_prediction import predict_files
    from workflows.run.options import PipelineSettings

    calls = [lambda: resolve_device("tpu"), lambda: predict_files([tmp_path], tmp_path / "no-model", device="tpu"),
             lambda: PipelineSettings(query="Li-*-O", device="tpu", model=str(tmp_path / "no-model"),
                                      cache_dir=str(tmp_path / "c"), out_dir=str(tmp_path / "o")).check()]
    for call in calls:
        with pytest.raises(ScreenError) as e:
            call()
        assert str(e.value) == "`device` tpu: choose auto, cpu, cuda"
    assert str(resolve_device("cpu")) == "cpu"
