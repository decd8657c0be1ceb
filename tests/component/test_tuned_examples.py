"""The tuned examples: every script's ``TASK`` builds valid configs, and ``--as-test`` can fail.

Every ``tuned_examples/<suite>/<task>.py`` is imported as ``benchmarks/compare.py`` imports it.
The ``--as-test`` check trains MPE simple_spread for two iterations of 400 env steps through
Ray Tune on the module's shared Ray instance (``ray_session``, tests/conftest.py) and then
re-reads the finished experiment (a rerun restores it instead of training again).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from rllib_hatrpo.cli.tuned_example import run_tuned_example
from rllib_hatrpo.experiments.tuned import METHODS, TunedTask

pytestmark = pytest.mark.component

TUNED_EXAMPLES = Path(__file__).resolve().parents[2] / "tuned_examples"
SCRIPTS = sorted(TUNED_EXAMPLES.glob("*/*.py"))
TINY_BATCH = 400  # env steps per iteration of the --as-test runs: 16 MPE episodes of 25 steps


def load_script(path: Path) -> ModuleType:
    """Imports a tuned example script as a module (its ``__main__`` block does not run)."""
    spec = importlib.util.spec_from_file_location(f"tuned_example_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tuned_examples_exist():
    names = {path.stem for path in SCRIPTS}
    assert {"halfcheetah_2x3", "halfcheetah_6x1", "walker2d_2x3", "ant_4x2"} <= names
    assert {"simple_spread", "simple_speaker_listener"} <= names


def test_halfcheetah_6x1_agents_see_observations_of_different_sizes():
    task = load_script(TUNED_EXAMPLES / "mamujoco" / "halfcheetah_6x1.py").TASK
    env = task.env_class()(dict(task.env_config))
    sizes = [env.observation_spaces[agent].shape[0] for agent in env.possible_agents]
    assert sizes == [9, 9, 8, 9, 9, 8]


@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_task_is_complete_and_documented(path):
    task = load_script(path).TASK
    assert isinstance(task, TunedTask)
    assert task.name == path.stem
    assert task.env_steps > 0
    assert set(task.expected) <= set(METHODS), f"unknown methods in {task.name}.expected"
    doc = load_script(path).__doc__
    assert "{expected}" not in doc, "the docstring's {expected} was not formatted"
    assert task.expected_text() in doc
    assert f"{task.env_steps:,} env steps" in doc
    for value in task.expected.values():
        assert f"{value:,.1f}" in doc
    if task.expected:
        assert task.expected_note, f"{task.name}: expected numbers without a note on their origin"


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("path", SCRIPTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_config_validates(path, method):
    task = load_script(path).TASK
    config = task.config(method, seed=1)
    config.validate()
    assert (
        config.train_batch_size_per_learner == task.hatrpo_training["train_batch_size_per_learner"]
    )
    assert config.num_envs_per_env_runner == task.num_envs_per_env_runner
    if method != "ppo":
        assert config.kl_allocator == method
        assert config.kl_threshold == task.training["kl_threshold"]


def test_as_test_without_expectation_exits_2(tmp_path):
    base = load_script(TUNED_EXAMPLES / "mpe" / "simple_spread.py").TASK
    task = dataclasses.replace(base, expected={})
    code = run_tuned_example(task, ["--as-test", "--storage-path", str(tmp_path)], err=sys.stderr)
    assert code == 2
    assert not any(tmp_path.iterdir()), "nothing may be trained without an expectation"


def test_as_test_thresholds_a_larger_budget_extends_and_a_rerun_restores(
    ray_session, tmp_path, capsys
):
    """One iteration of 400 env steps against an unreachable 1e9 (exit 1); the same command
    with --stop-timesteps 800 against -1e9 (exit 0); then that command again.

    The larger budget continues the finished trial from its checkpoint in the same (renamed)
    experiment: iteration 2 follows iteration 1 and the plan record says 800. The rerun
    restores the finished trial without training; other seeds are refused.
    """
    base = load_script(TUNED_EXAMPLES / "mpe" / "simple_spread.py").TASK
    tiny = dataclasses.replace(
        base,
        env_steps=TINY_BATCH,
        training={**base.training, "train_batch_size_per_learner": TINY_BATCH},
        episodes_for_smoothing=10,
    )
    argv = ["--as-test", "--storage-path", str(tmp_path), "--checkpoint-every", "1"]
    unreachable = dataclasses.replace(tiny, expected={"uniform": 1e9})
    assert run_tuned_example(unreachable, argv, out=sys.stdout, err=sys.stderr) == 1
    captured = capsys.readouterr()
    assert "FAILED" in captured.out and "--as-test: FAILED" in captured.err
    assert f"after {TINY_BATCH:,} env steps" in captured.out
    (first,) = tmp_path.glob(f"simple_spread_uniform_{TINY_BATCH}/*/progress.csv")
    trial = first.parent.name

    reachable = dataclasses.replace(tiny, expected={"uniform": -1e9})
    longer = [*argv, "--stop-timesteps", str(2 * TINY_BATCH)]
    assert run_tuned_example(reachable, longer, out=sys.stdout, err=sys.stderr) == 0
    out = capsys.readouterr().out
    assert "finished trials continue to the new stop" in out
    assert f"after {2 * TINY_BATCH:,} env steps" in out
    assert "(expected >= -1,000,000,000.00: ok)" in out
    assert not (tmp_path / f"simple_spread_uniform_{TINY_BATCH}").exists()
    experiment = tmp_path / f"simple_spread_uniform_{2 * TINY_BATCH}"
    rows = pd.read_csv(experiment / trial / "progress.csv")
    assert rows["training_iteration"].tolist() == [1, 2]
    assert rows["env_steps"].tolist() == [TINY_BATCH, 2 * TINY_BATCH]
    record = json.loads((experiment / "tuned_example.json").read_text())
    assert record["stop_timesteps"] == 2 * TINY_BATCH

    # Same command line, same experiment folder: Tune restores the finished trial, no training.
    assert run_tuned_example(reachable, longer, out=sys.stdout, err=sys.stderr) == 0
    assert "(expected >= -1,000,000,000.00: ok)" in capsys.readouterr().out
    assert len(list(experiment.glob("*/params.json"))) == 1
    assert pd.read_csv(experiment / trial / "progress.csv")["training_iteration"].tolist() == [1, 2]

    # Other seeds in the same experiment folder: refused before anything trains.
    assert run_tuned_example(reachable, [*longer, "--seeds", "0", "1"], err=sys.stderr) == 2
    assert "--seeds: [0] then, [0, 1] now" in capsys.readouterr().err
