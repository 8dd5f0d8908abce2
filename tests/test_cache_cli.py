from typer.testing import CliRunner

from cli import app
from tests.store_workers import write_range

runner = CliRunner()


def test_cache_info_ls_verify_clear(tmp_path):
    cache = tmp_path / "cache"
    write_range(str(cache / "graphs"), 0, 90, 30)
    r = runner.invoke(app, ["cache", "info", "--cache", str(cache)])
    assert r.exit_code == 0 and "90" in r.output and "3 units" in r.output
    r = runner.invoke(app, ["cache", "ls", "--cache", str(cache), "--limit", "5"])
    assert r.exit_code == 0 and "90 crystals" in r.output and "85 more rows" in r.output
    r = runner.invoke(app, ["cache", "verify", "--cache", str(cache)])
    assert r.exit_code == 0 and "ok: 3 units verified" in r.output
    shard = next((cache / "graphs" / "units").glob("*.zarr/dst/c/0"))
    shard.write_bytes(shard.read_bytes()[:-3] + b"xyz")
    r = runner.invoke(app, ["cache", "verify", "--cache", str(cache)])
    assert r.exit_code == 1 and "checksum mismatch in dst/c/0" in r.output
    r = runner.invoke(app, ["cache", "clear", "--cache", str(cache), "--yes"])
    assert r.exit_code == 0 and not cache.exists()
    r = runner.invoke(app, ["cache", "info", "--cache", str(cache)])
    assert r.exit_code == 2 and "no cache directory" in r.output
