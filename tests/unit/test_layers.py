"""The package's layers import only downward: core < envs < algorithm < experiments < cli.

Read from the source with ``ast`` (every ``import`` anywhere in a file, also inside functions),
so a lazy import that goes upward counts as much as a top-level one.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "rllib_hatrpo"

#: Layer of each top-level part of the package, lowest first; files at the package root and
#: ``connectors/``, ``torch/`` are the algorithm (RLlib's config, algorithm, learner, modules).
LAYERS = ("core", "envs", "algorithm", "experiments", "cli")
_FOLDER_LAYER = {"core": "core", "envs": "envs", "experiments": "experiments", "cli": "cli"}


def _layer_of_path(path: Path) -> str:
    first = path.relative_to(PACKAGE).parts[0]
    return _FOLDER_LAYER.get(first, "algorithm")


def _layer_of_module(module: str) -> str | None:
    """Layer of an ``rllib_hatrpo...`` module name; None for anything else."""
    parts = module.split(".")
    if parts[0] != "rllib_hatrpo":
        return None
    if len(parts) == 1:
        return "algorithm"  # the package's __init__ exports the config and algorithm
    return _FOLDER_LAYER.get(parts[1], "algorithm")


def _imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "rllib_hatrpo":  # `from rllib_hatrpo import core` names modules
                names += [f"rllib_hatrpo.{alias.name}" for alias in node.names]
            else:
                names.append(node.module)
    return names


def _violations(
    files: list[Path], allowed_below: str, *, forbid_ray: bool = False, root: Path = ROOT
) -> list[str]:
    rank = LAYERS.index(allowed_below)
    found = []
    for path in files:
        name = path.relative_to(root)
        for module in _imported_modules(path):
            layer = _layer_of_module(module)
            if layer is not None and LAYERS.index(layer) > rank:
                found.append(f"{name} imports {module} ({layer})")
            if forbid_ray and module.split(".")[0] == "ray":
                found.append(f"{name} imports {module}")
    return found


def _package_files(layer: str) -> list[Path]:
    return [p for p in PACKAGE.rglob("*.py") if _layer_of_path(p) == layer]


@pytest.mark.parametrize("layer", LAYERS)
def test_each_layer_imports_only_itself_and_the_layers_below(layer):
    files = _package_files(layer)
    assert files, layer
    assert _violations(files, layer, forbid_ray=layer == "core") == []


def test_benchmarks_do_not_import_the_command_line():
    """Benchmarks use the library; the tuned examples are command lines themselves
    (``rllib_hatrpo.cli.tuned_example``)."""
    scripts = list((ROOT / "benchmarks").rglob("*.py"))
    assert scripts
    assert _violations(scripts, "experiments") == []


def test_the_check_sees_an_upward_import(tmp_path):
    """Negative control: a core file importing the CLI inside a function is reported."""
    core = tmp_path / "rllib_hatrpo" / "core"
    core.mkdir(parents=True)
    bad = core / "bad.py"
    bad.write_text("def f():\n    from rllib_hatrpo.cli.common import UsageError\n    import ray\n")
    assert _violations([bad], "core", forbid_ray=True, root=tmp_path) == [
        "rllib_hatrpo/core/bad.py imports rllib_hatrpo.cli.common (cli)",
        "rllib_hatrpo/core/bad.py imports ray",
    ]
