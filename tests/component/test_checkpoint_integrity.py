"""Every restore path checks what it restores; a checkpoint never stores non-finite state.

The two restore paths are ``hatrpo train --resume`` (:mod:`rllib_hatrpo.experiments.resume`) and
the Tune
trainable :func:`rllib_hatrpo.experiments.tune.train_trial` (``hatrpo tune``, the tuned examples,
``benchmarks/compare.py``). The trainable is called here outside a Tune run, with
``tune.get_checkpoint`` and ``tune.report`` replaced: Tune itself would only hand it the
checkpoint folder it stored.
"""

from __future__ import annotations

import json
import pickle
import re
import shutil
from pathlib import Path

import pytest

from rllib_hatrpo.cli.main import build_parser, main
from rllib_hatrpo.cli.train import build_config, resolve_allocator, resolve_env
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.experiments.records import (
    CheckpointError,
    check_checkpoint_files,
    recover_checkpoint,
    restore_checkpoint,
    save_checkpoint_atomically,
)
from rllib_hatrpo.experiments.resume import plan_seed
from rllib_hatrpo.experiments.tune import train_trial
from tests.helpers import TINY_TRAIN

pytestmark = pytest.mark.component

TRAIN = TINY_TRAIN
WEIGHTS = Path("learner_group", "learner", "rl_module", "agent_1", "module_state.pkl")
MODULE_DIR = Path("learner_group", "learner", "rl_module", "agent_0")
MANIFEST = "manifest.json"


def _config(params=None):
    """The config of the run below (``build_config`` of the Tune trainable)."""
    args = build_parser().parse_args(TRAIN)
    env, env_config, _ = resolve_env(args)
    allocator, _ = resolve_allocator(args)
    return build_config(args, env, env_config, allocator).debugging(seed=0)


@pytest.fixture(scope="module")
def run(ray_session, tmp_path_factory):
    """A 1-iteration ``hatrpo train`` run (checkpoint at iteration 1); copy it to damage it."""
    root = tmp_path_factory.mktemp("integrity")
    assert main([*TRAIN, "--stop-iters", "1", "--output", str(root / "run")]) == 0
    return root / "run"


@pytest.fixture(scope="module")
def algo(ray_session, run):
    """An algorithm with the run's config (not trained), to restore into and save."""
    algo = _config().build_algo()
    yield algo
    algo.stop()


def _checkpoint(run: Path, tmp_path: Path) -> Path:
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(run / "seed_0" / "checkpoint", checkpoint)
    return checkpoint


def _flip_byte(file: Path) -> None:
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0x01
    file.write_bytes(bytes(data))
    pickle.loads(bytes(data))  # still a valid pickle: only the checksum tells


def _train_trial_from(checkpoint: Path, monkeypatch, reported: Path | None = None) -> list:
    """Runs the Tune trainable as a trial resumed from ``checkpoint``; returns its reports."""
    from ray import tune

    reports = []

    def report(metrics, checkpoint=None):
        reports.append(metrics)
        if checkpoint is not None and reported is not None:
            shutil.rmtree(reported, ignore_errors=True)
            shutil.copytree(checkpoint.path, reported)

    monkeypatch.setattr(tune, "get_checkpoint", lambda: tune.Checkpoint.from_directory(checkpoint))
    monkeypatch.setattr(tune, "report", report)
    train_trial({}, build_config=_config, iterations=2, checkpoint_every=1)
    return reports


def test_flipped_byte_in_module_weights_is_refused_on_resume(run, algo, tmp_path, capsys):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    checkpoint = copy / "seed_0" / "checkpoint"
    weights = checkpoint / WEIGHTS
    _flip_byte(weights)
    assert main(["train", "--resume", str(copy), "--stop-iters", "2"]) == 2
    err = capsys.readouterr().err
    assert "argument --resume" in err and str(weights) in err and "sha256" in err
    assert "delete it to train this seed again" in err
    with pytest.raises(CheckpointError, match=re.escape(str(weights))):
        restore_checkpoint(algo, checkpoint)


def test_flipped_byte_in_module_weights_is_refused_by_the_tune_trainable(
    run, tmp_path, monkeypatch
):
    checkpoint = _checkpoint(run, tmp_path)
    _flip_byte(checkpoint / WEIGHTS)
    with pytest.raises(CheckpointError, match=re.escape(str(checkpoint / WEIGHTS))):
        _train_trial_from(checkpoint, monkeypatch)


def test_tune_trainable_refuses_a_checkpoint_without_a_component(run, tmp_path, monkeypatch):
    """A module missing from a checkpoint whose manifest agrees: RLlib alone skips it."""
    checkpoint = _checkpoint(run, tmp_path)
    shutil.rmtree(checkpoint / MODULE_DIR)
    manifest = checkpoint / MANIFEST
    if manifest.is_file():  # drop its entries: only the component check can tell
        record = json.loads(manifest.read_text())
        prefix = MODULE_DIR.as_posix() + "/"
        record["files"] = {k: v for k, v in record["files"].items() if not k.startswith(prefix)}
        manifest.write_text(json.dumps(record))
    with pytest.raises(CheckpointError, match=re.escape(f"missing {checkpoint / MODULE_DIR}")):
        _train_trial_from(checkpoint, monkeypatch)


def test_tune_trainable_restores_an_intact_checkpoint_and_saves_a_manifest(
    run, tmp_path, monkeypatch
):
    reported = tmp_path / "reported"
    reports = _train_trial_from(_checkpoint(run, tmp_path), monkeypatch, reported)
    assert [r["training_iteration"] for r in reports] == [2]
    assert (reported / MANIFEST).is_file()
    check_checkpoint_files(reported)


def test_checkpoint_without_manifest_is_refused_as_an_interrupted_save(run, algo, tmp_path):
    checkpoint = _checkpoint(run, tmp_path)
    (checkpoint / MANIFEST).unlink(missing_ok=True)
    message = re.escape(f"{checkpoint} has no {MANIFEST}") + ".*did not finish"
    with pytest.raises(CheckpointError, match=message):
        recover_checkpoint(checkpoint)
    with pytest.raises(CheckpointError, match=message):
        restore_checkpoint(algo, checkpoint)
    # A save's temporary directory is never restored, even when it is complete.
    tmp = tmp_path / "checkpoint.tmp"
    shutil.copytree(run / "seed_0" / "checkpoint", tmp)
    with pytest.raises(CheckpointError, match=re.escape(f"{tmp} is the temporary directory")):
        restore_checkpoint(algo, tmp)


def test_damaged_checkpoint_old_is_refused_and_left_in_place(run, tmp_path):
    seed_dir = tmp_path / "seed_0"
    shutil.copytree(run / "seed_0", seed_dir)
    old = seed_dir / "checkpoint.old"
    (seed_dir / "checkpoint").rename(old)
    _flip_byte(old / WEIGHTS)
    with pytest.raises(Exception, match=re.escape(str(old / WEIGHTS))):
        plan_seed(seed_dir, 0)
    assert old.is_dir() and not (seed_dir / "checkpoint").exists()


def test_save_refuses_a_non_finite_critic_buffer_and_keeps_the_previous_checkpoint(algo, tmp_path):
    target = tmp_path / "checkpoint"
    save_checkpoint_atomically(algo, target)
    before = {p: p.read_bytes() for p in target.rglob("*") if p.is_file()}
    critic = algo.learner_group._learner.module[SHARED_CRITIC_ID].unwrapped()
    value = critic.value_norm_mean.clone()
    critic.value_norm_mean.fill_(float("nan"))
    try:
        with pytest.raises(CheckpointError, match=r"non-finite.*value_norm_mean"):
            save_checkpoint_atomically(algo, target)
    finally:
        critic.value_norm_mean.copy_(value)
    assert {p: p.read_bytes() for p in target.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]
    check_checkpoint_files(target)


def test_evaluate_refuses_a_flipped_byte_in_module_weights(run, tmp_path):
    from rllib_hatrpo.experiments.evaluation import EvaluationError, load_checkpoint_policies

    checkpoint = _checkpoint(run, tmp_path)
    _flip_byte(checkpoint / WEIGHTS)
    with pytest.raises(EvaluationError, match=re.escape(str(checkpoint / WEIGHTS))) as error:
        load_checkpoint_policies(checkpoint)
    assert error.value.setting == "checkpoint"
