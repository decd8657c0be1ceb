"""Bad command-line input: usage errors (exit code 2) before Ray starts, never tracebacks.

Everything here parses and resolves flags only: no Ray instance, no training.
"""

from __future__ import annotations

import sys
import textwrap

import pytest

from rllib_hatrpo.experiments.spec import import_object


@pytest.fixture
def no_ray(monkeypatch):
    """Fails the test if a command tries to start Ray."""

    def refuse(*args, **kwargs):
        raise AssertionError("Ray was started")

    monkeypatch.setattr("rllib_hatrpo.cli.train.init_ray", refuse)


def _module_in_cwd(monkeypatch, tmp_path, name: str, source: str) -> None:
    """Writes ``name.py`` into ``tmp_path``, the new working directory, not on ``sys.path``."""
    (tmp_path / name).with_suffix(".py").write_text(textwrap.dedent(source))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    monkeypatch.delitem(sys.modules, name, raising=False)


def test_import_object_finds_a_module_in_the_working_directory(monkeypatch, tmp_path):
    """As ``python -m`` would; before: ModuleNotFoundError without PYTHONPATH=."""
    _module_in_cwd(monkeypatch, tmp_path, "my_cwd_envs", "def factory(cfg):\n    return cfg\n")
    assert import_object("my_cwd_envs:factory", "env")({"a": 1}) == {"a": 1}
