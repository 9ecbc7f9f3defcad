"""The wheel must carry every package of the source tree (non-editable installs)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_source_package_is_listed_in_pyproject():
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setuptools["packages"])
    dirs = {path: name for name, path in setuptools["package-dir"].items()}
    found = set()
    for top, name in dirs.items():
        for init in (ROOT / top).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / top)
            found.add(".".join([name, *rel.parts]))
    assert found == listed, f"unlisted: {sorted(found - listed)}, stale: {sorted(listed - found)}"


def test_every_data_file_of_the_source_packages_is_in_package_data():
    # A file the code opens at run time (the Verilog memory model, the timing constraints)
    # is in an editable install but not in the wheel unless package-data names it.
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = setuptools["package-data"]
    missing = []
    for name, top in setuptools["package-dir"].items():
        for path in (ROOT / top).rglob("*"):
            if (not path.is_file() or path.suffix in (".py", ".pyc")
                    or "__pycache__" in path.parts):
                continue
            # The file belongs to the innermost listed package that holds it.
            rel = path.relative_to(ROOT / top)
            for depth in range(len(rel.parts) - 1, -1, -1):
                pkg = ".".join([name, *rel.parts[:depth]])
                if pkg in setuptools["packages"]:
                    break
            inner = Path(*rel.parts[depth:])
            if not any(inner.match(p) or str(inner) == p for p in patterns.get(pkg, [])):
                missing.append(str(path.relative_to(ROOT)))
    assert not missing, f"not in [tool.setuptools.package-data]: {missing}"
