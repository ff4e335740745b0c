"""The package's layers: utilities and data < core < methods < stages < entry points. No module imports from a
layer above its own, so the core stays usable by every method and a method never depends on how it is run."""

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "lightpeft"
LAYERS = {"core": 1, "methods": 2, "stages": 3, "bench": 4, "integrations": 4, "cli": 4, "__init__": 4,
          "__main__": 4}
MAX_MODULE_LINES = 450


def layer(module: str) -> int:
    """0 for the utilities (errors, io, config, data, metrics, ...), else by the top-level folder or module."""
    return LAYERS.get(module.split(".")[0], 0)


def modules() -> list[tuple[str, Path]]:
    return [(".".join(p.relative_to(PACKAGE).with_suffix("").parts), p) for p in sorted(PACKAGE.rglob("*.py"))]


def imported(path: Path) -> set[str]:
    """lightpeft modules (without the `lightpeft.` prefix) that `path` imports, at any depth of the file."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            raise AssertionError(f"{path.name} uses a relative import; use `from lightpeft.... import`")
        if isinstance(node, ast.ImportFrom) and node.module == "lightpeft":  # submodules, or the root's own names
            found.update(a.name if (PACKAGE / f"{a.name}.py").exists() or (PACKAGE / a.name).is_dir() else "__init__"
                         for a in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lightpeft."):
            found.add(node.module.removeprefix("lightpeft."))
        if isinstance(node, ast.Import):
            found.update(a.name.removeprefix("lightpeft.") for a in node.names if a.name.startswith("lightpeft."))
    return found


@pytest.mark.parametrize("module,path", modules(), ids=[m for m, _ in modules()])
def test_no_module_imports_from_a_higher_layer(module, path):
    own = layer(module)
    upward = sorted(m for m in imported(path) if layer(m) > own and m != module)
    assert not upward, f"lightpeft.{module} (layer {own}) imports from a higher layer: {upward}"


def test_methods_do_not_import_each_other():
    for module, path in modules():
        if module.startswith("methods.") and module.count(".") >= 2:
            method = module.split(".")[1]
            others = [m for m in imported(path) if m.startswith("methods.") and m.split(".")[1] != method]
            assert not others, f"lightpeft.{module} imports another method: {others}"


def test_no_module_is_too_long_to_read():
    long = {module: n for module, path in modules() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules (over {MAX_MODULE_LINES} lines): {long}"


def test_ruff_finds_nothing():
    """pyflakes and import order (the rules in pyproject.toml) over the package and the tests."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    result = subprocess.run([ruff, "check", "--quiet", "src", "tests"], cwd=PACKAGE.parents[1], capture_output=True,
                            text=True)
    assert result.returncode == 0, result.stdout[-3000:]
