"""The design card's layering, checked on the source: a change that breaks it fails here."""
import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def imported_modules(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            yield node.module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


def test_cli_goes_through_workflows_only():
    ours = [(m, names) for m, names in imported_modules(ROOT / "cli.py") if m.split(".")[0] in ("screening", "cache")]
    assert ours == [("screening.errors", ["ScreenError"])]


def test_the_domain_library_imports_neither_dask_nor_the_cache():
    for path in (ROOT / "screening").rglob("*.py"):
        for module, _ in imported_modules(path):
            top = module.split(".")[0]
            assert top not in ("dask", "distributed", "cache", "workflows"), f"{path}: imports {module}"


def test_only_the_cache_dir_spells_the_cache_layout():
    folders = ("graphs", "structures", "references", "predictions", "relaxed", "datasets", "mp_entries")
    pattern = re.compile(r"""/\s*["'](%s)["']""" % "|".join(folders))  # a path joined with a cache folder name
    offenders = [str(p.relative_to(ROOT)) for d in ("workflows", "screening") for p in (ROOT / d).rglob("*.py")
                 if pattern.search(p.read_text())]
    offenders += ["cli.py"] if pattern.search((ROOT / "cli.py").read_text()) else []
    assert offenders == []
