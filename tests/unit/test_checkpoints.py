"""The checkpoint manifest and the non-finite state check, on plain files and fakes (no Ray)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from rllib_hatrpo.experiments.checkpoints import (
    MANIFEST_FILE,
    CheckpointError,
    NonFiniteStateError,
    non_finite_module_tensors,
    save_checkpoint_atomically,
    verify_manifest,
)


class _FakeAlgo:
    """Writes a small checkpoint; its remote learner group returns ``weights`` as state."""

    def __init__(self, weights=None):
        state = {"learner": {"rl_module": weights or {"a": {"w": np.zeros(3)}}}}
        self.learner_group = SimpleNamespace(is_local=False, get_state=lambda **_: state)

    def save_to_path(self, path):
        path = Path(path) / "module"
        path.mkdir(parents=True)
        (path / "weights.pkl").write_bytes(b"\x01\x02\x03\x04")
        (path.parent / "rllib_checkpoint.json").write_text("{}")


@pytest.fixture
def checkpoint(tmp_path):
    return save_checkpoint_atomically(_FakeAlgo(), tmp_path / "checkpoint")


def test_manifest_lists_every_file_and_accepts_the_intact_checkpoint(checkpoint):
    record = json.loads((checkpoint / MANIFEST_FILE).read_text())
    assert sorted(record["files"]) == ["module/weights.pkl", "rllib_checkpoint.json"]
    assert record["files"]["module/weights.pkl"]["size"] == 4
    verify_manifest(checkpoint)
    (checkpoint / ".metadata.json").write_text("{}")  # Ray's metadata of a stored checkpoint
    verify_manifest(checkpoint)


@pytest.mark.parametrize(
    "damage, named, says",
    [
        ("flip", "module/weights.pkl", "differs from the sha256"),
        ("truncate", "module/weights.pkl", "has 2 bytes, manifest.json says 4"),
        ("extra", "module/extra.pkl", "is not in manifest.json"),
        ("missing dir", "module", "is missing (1 files listed in manifest.json)"),
        ("bad manifest", MANIFEST_FILE, "is damaged"),
        ("escaping entry", MANIFEST_FILE, "is damaged"),
    ],
)
def test_manifest_names_the_file_that_differs(checkpoint, damage, named, says):
    weights = checkpoint / "module" / "weights.pkl"
    manifest = checkpoint / MANIFEST_FILE
    if damage == "flip":
        weights.write_bytes(b"\x01\x02\x03\x05")
    elif damage == "truncate":
        weights.write_bytes(b"\x01\x02")
    elif damage == "extra":
        (checkpoint / "module" / "extra.pkl").write_bytes(b"")
    elif damage == "missing dir":
        weights.unlink()
        weights.parent.rmdir()
    elif damage == "bad manifest":
        manifest.write_text("{")
    elif damage == "escaping entry":
        record = json.loads(manifest.read_text())
        record["files"]["../outside"] = {"size": 0, "sha256": ""}
        manifest.write_text(json.dumps(record))
    with pytest.raises(
        CheckpointError, match=re.escape(f"{checkpoint / named}") + ".*" + re.escape(says)
    ):
        verify_manifest(checkpoint)


def test_save_refuses_non_finite_state_of_a_remote_learner(checkpoint):
    before = (checkpoint / MANIFEST_FILE).read_bytes()
    weights = {"a": {"w": np.zeros(3), "steps": np.array([7])}, "b": {"w": np.array([math.inf])}}
    assert non_finite_module_tensors(_FakeAlgo(weights)) == ["b/w"]
    with pytest.raises(
        NonFiniteStateError, match=re.escape(f"(b/w), so training diverged; {checkpoint} keeps")
    ):
        save_checkpoint_atomically(_FakeAlgo(weights), checkpoint)
    assert (checkpoint / MANIFEST_FILE).read_bytes() == before
    assert sorted(p.name for p in checkpoint.parent.iterdir()) == ["checkpoint"]
