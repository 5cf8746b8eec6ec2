"""The repository's layout and its packaging: the design card's top level, one installed namespace.

``schemas/``, ``streams/``, ``workers/`` and ``bench/`` sit at the top of the repository and install
as ``streamrec.schemas``, ``streamrec.streams``, ``streamrec.workers`` and ``streamrec.bench``
(``pyproject.toml``'s ``package-dir``). These tests import every module as the installed package
names it (which is also how every module's doctests run, since pytest's own doctest collection
would import the top-level folders under their bare names), and check that a built wheel holds the
same modules and nothing outside ``streamrec/``.
"""

from __future__ import annotations

import doctest
import importlib
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PACKAGE_DIR = PYPROJECT["tool"]["setuptools"]["package-dir"]


def source_modules() -> list[str]:
    """Every module of the source tree, by the dotted name it installs under."""
    names = []
    for package, folder in sorted(PACKAGE_DIR.items()):
        for path in sorted((ROOT / folder).glob("*.py")):
            names.append(package if path.stem == "__init__" else f"{package}.{path.stem}")
    return names


MODULES = source_modules()


def test_top_level_is_the_design_cards():
    top = {p.name for p in ROOT.iterdir()}
    for name in ("pyproject.toml", "streams", "workers", "schemas", "deploy", "tests",
                 "docker-compose.yml"):  # fmt: skip
        assert name in top, f"{name} missing at the repository root"
    assert not (ROOT / "streamrec" / "streams").exists(), "streams/ still nested under streamrec/"


def test_every_folder_is_mapped_and_every_package_listed():
    packages = set(PYPROJECT["tool"]["setuptools"]["packages"])
    assert packages == set(PACKAGE_DIR), "packages and package-dir disagree"
    for package, folder in PACKAGE_DIR.items():
        assert package == "streamrec" or package.startswith("streamrec."), package
        assert (ROOT / folder / "__init__.py").exists(), f"{folder}/ is not a package"


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_from_the_source_tree_and_its_doctests_pass(name):
    module = importlib.import_module(name)
    folder = PACKAGE_DIR[name if name in PACKAGE_DIR else name.rsplit(".", 1)[0]]
    assert Path(module.__file__).resolve().parent == (ROOT / folder).resolve(), (
        f"{name} imported from {module.__file__}, not from the working tree (reinstall: make install)"
    )
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} of {result.attempted} doctests of {name} failed"


def test_command_line_modules_import_each_other_in_no_circle():
    """Each ``streamrec.cli*`` module imports in a fresh interpreter on its own (a circle fails)."""
    for name in ("streamrec.cli_worker", "streamrec.cli_bench", "streamrec.cli"):
        subprocess.run([sys.executable, "-c", f"import {name}"], check=True, cwd="/")
    cli_sources = [ROOT / "streamrec" / f for f in ("cli_worker.py", "cli_bench.py")]
    for path in cli_sources:
        assert "from streamrec.cli import" not in path.read_text(), f"{path.name} imports cli"


def test_a_built_wheel_holds_every_module_under_the_namespace_and_imports_them(tmp_path):
    # built from a copy: an in-tree build leaves build/ behind, whose stale modules a later wheel
    # would carry
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", ".state", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache",
        ".hypothesis", "out", "bench-results"))  # fmt: skip
    out = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                    "-q", "-w", str(out), str(source)], check=True, cwd=tmp_path)  # fmt: skip
    (wheel,) = out.glob("streamrec-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"streamrec"}, tops
    expected = {name.replace(".", "/") + ("/__init__.py" if name in PACKAGE_DIR else ".py")
                for name in MODULES}  # fmt: skip
    assert expected <= set(names), sorted(expected - set(names))

    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)  # fmt: skip
    probe = (
        "import importlib, sys\n"
        f"sys.path.insert(0, {str(target)!r})\n"
        f"for name in {MODULES!r}:\n"
        "    m = importlib.import_module(name)\n"
        f"    assert m.__file__.startswith({str(target)!r}), (name, m.__file__)\n"
        "print(len(sys.modules))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    subprocess.run([sys.executable, "-c", probe], check=True, cwd=tmp_path, env=env)
