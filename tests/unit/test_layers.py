"""The import layers of .importlinter hold on this tree, the check fails on a wrong import, and
no module is part of an import circle."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / ".importlinter"), "--no-cache", "--no-logo"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=120)


def test_layers_hold_on_this_tree():
    result = lint_imports(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


def test_an_engine_importing_the_http_layer_breaks_the_layers(tmp_path):
    shutil.copytree(ROOT / "backend", tmp_path / "backend", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    base = tmp_path / "backend" / "engines" / "base.py"
    base.write_text(base.read_text() + "\nfrom ..api import request  # a leaf that knows HTTP\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "backend.engines.base -> backend.api.request" in result.stdout


def test_a_refinement_stage_importing_a_later_one_breaks_the_layers(tmp_path):
    shutil.copytree(ROOT / "backend", tmp_path / "backend", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".importlinter", tmp_path)
    crossval = tmp_path / "backend" / "refinement" / "validation" / "crossval.py"
    crossval.write_text(crossval.read_text() + "\nfrom ..selection import optimizer  # validation knows selection\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    assert "Refinement stages only point down BROKEN" in result.stdout


def test_no_import_circles():
    graph = grimp.build_graph("backend")
    circles = sorted((a, b) for a in graph.modules for b in graph.find_modules_directly_imported_by(a)
                     if graph.chain_exists(importer=b, imported=a))
    assert circles == []
