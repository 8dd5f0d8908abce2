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
            assert top not in ("dask", "distributed", "cache", "workflows", "cli"), f"{path}: imports {module}"


def test_only_the_cache_dir_spells_the_cache_layout():
    folders = ("graphs", "structures", "references", "predictions", "relaxed", "datasets", "mp_entries")
    pattern = re.compile(r"""/\s*["'](%s)["']""" % "|".join(folders))  # a path joined with a cache folder name
    offenders = [str(p.relative_to(ROOT)) for d in ("workflows", "screening") for p in (ROOT / d).rglob("*.py")
                 if pattern.search(p.read_text())]
    offenders += ["cli.py"] if pattern.search((ROOT / "cli.py").read_text()) else []
    assert offenders == []


# The library names a setting by its parameter name (screening/errors.py); only cli.py knows flags.
FLAG = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
# Flags that are not `screen`'s: a C compiler's, and the build scripts' own argparse command lines.
NOT_SCREENS = {"screening/kernel_build.py": {"--version"}, "screening/data/build_geometry.py": {"--data"},
               "screening/data/build_references.py": {"--data", "--model"}}


def flags_named(path: Path) -> set:
    """The flags a module's string literals name: messages, f-strings' text, docstrings (comments are not seen)."""
    return {flag for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str) for flag in FLAG.findall(node.value)}


def test_the_domain_library_names_parameters_not_flags():
    named = {str(p.relative_to(ROOT)): flags_named(p) for p in (ROOT / "screening").rglob("*.py")}
    offenders = {f: sorted(flags - NOT_SCREENS.get(f, set())) for f, flags in named.items()
                 if flags - NOT_SCREENS.get(f, set())}
    assert offenders == {}, "name the parameter in backticks instead (`partition_size`, not --partition-size)"
