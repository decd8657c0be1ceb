"""``hatrpo train --resume``: continuing an interrupted run, and refusing damaged checkpoints.

What a resumed run is checked to share with an uninterrupted one: the learner state right after
restoring (weights, critic optimizer, agent-order RNG, allocator state) equals the saved one;
iterations 1..k of ``metrics.csv`` are kept as written and every later iteration appears once;
the env-step counter and the iteration number continue; the agent-order RNG after the last
iteration equals that of an uninterrupted run. Not equal: the weights after the first resumed
iteration. The EnvRunner is rebuilt on resume, so its env and action-sampling RNGs restart from
the seed and iteration k+1 samples other episodes than the uninterrupted run does (measured on
the differential game with 200 env steps per iteration: team return 0.204 resumed vs 0.206
uninterrupted at iteration 3). On the same episodes the restored learner takes the same
step: ``test_checkpoint_restore_continues_with_identical_learner_state`` in test_learner.py,
which also covers a stateful allocator (kkt with share_smoothing).
"""

from __future__ import annotations

import argparse
import json
import pickle
import random
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from rllib_hatrpo.cli.main import build_parser, main
from rllib_hatrpo.cli.train import build_config, resolve_allocator, resolve_env
from rllib_hatrpo.experiments.records import (
    CheckpointError,
    MetricsCsv,
    flatten_result,
    recover_checkpoint,
    restore_checkpoint,
    truncate_metrics_csv,
)
from rllib_hatrpo.experiments.resume import merge_flags, plan_seed, restore_seed
from tests.helpers import TINY_TRAIN

pytestmark = pytest.mark.component

TRAIN = [*TINY_TRAIN, "--checkpoint-every", "1"]
LEARNER_STATE = Path("learner_group", "learner", "state.pkl")
AGENTS = ["agent_0", "agent_1"]


def _csv(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "seed_0" / "metrics.csv")


def _saved_learner_state(checkpoint: Path) -> dict:
    with (checkpoint / LEARNER_STATE).open("rb") as f:
        return pickle.load(f)


@pytest.fixture(scope="module")
def two_iterations(ray_session, tmp_path_factory):
    """A 2-iteration run (checkpoint at iteration 2) and an untouched copy of it."""
    root = tmp_path_factory.mktemp("resume")
    assert main([*TRAIN, "--stop-iters", "2", "--output", str(root / "run")]) == 0
    shutil.copytree(root / "run", root / "pristine")
    return root / "run", root / "pristine"


@pytest.fixture(scope="module")
def built_algo(ray_session, two_iterations):
    """An algorithm with the run's config (not trained), to restore checkpoints into."""
    args = build_parser().parse_args(TRAIN)
    env, env_config, _ = resolve_env(args)
    allocator, _ = resolve_allocator(args)
    algo = build_config(args, env, env_config, allocator).debugging(seed=0).build_algo()
    yield algo
    algo.stop()


def test_resume_appends_each_iteration_once_after_a_crash(two_iterations, capsys):
    run, _ = two_iterations
    before = _csv(run)
    # A crash after the last checkpoint: iteration 3 was logged, then a line half-written.
    with (run / "seed_0" / "metrics.csv").open("a") as f:
        f.write("3,999999," + "," * (len(before.columns) - 3) + "\n4,12")
    code = main(["train", "--resume", str(run), "--stop-iters", "4", "--env", "differential_game"])
    assert code == 0, capsys.readouterr().err
    assert "restored iteration 2" in capsys.readouterr().out
    frame = _csv(run)
    assert frame["training_iteration"].tolist() == [1, 2, 3, 4]
    assert frame["env_steps"].tolist() == [100, 200, 300, 400]
    pd.testing.assert_frame_equal(frame.iloc[:2], before)  # kept byte for byte
    assert frame["time_total_s"].is_monotonic_increasing
    record = json.loads((run / "args.json").read_text())
    assert record["flags"]["stop_iters"] == 4 and record["flags"]["allocator"] == "uniform"
    assert record["resumed"][0]["argv"][1:3] == ["train", "--resume"]
    # Resuming a finished run trains nothing.
    assert main(["train", "--resume", str(run)]) == 0
    assert "already finished" in capsys.readouterr().out
    assert _csv(run)["training_iteration"].tolist() == [1, 2, 3, 4]


@pytest.mark.slow
def test_resumed_run_continues_the_order_rng_of_an_uninterrupted_run(
    two_iterations, tmp_path, capsys
):
    """Same iterations 1-2, same agent-order RNG after 4 iterations (weights: see module doc).

    Slow: a second, uninterrupted 4-iteration run (72 s on 2 busy cores).
    """
    _, pristine = two_iterations
    resumed = tmp_path / "resumed"
    shutil.copytree(pristine, resumed)
    assert main(["train", "--resume", str(resumed), "--stop-iters", "4"]) == 0
    whole = tmp_path / "whole"
    assert main([*TRAIN, "--stop-iters", "4", "--output", str(whole)]) == 0
    a, b = _csv(resumed), _csv(whole)
    pd.testing.assert_series_equal(a["team_return"][:2], b["team_return"][:2])
    assert a["env_steps"].tolist() == b["env_steps"].tolist()
    state_a = _saved_learner_state(resumed / "seed_0" / "checkpoint")["hatrpo"]
    state_b = _saved_learner_state(whole / "seed_0" / "checkpoint")["hatrpo"]
    assert state_a == state_b


def test_restore_sets_the_saved_learner_state(two_iterations, built_algo):
    _, pristine = two_iterations
    checkpoint = pristine / "seed_0" / "checkpoint"
    saved = _saved_learner_state(checkpoint)
    fresh_rng = random.Random(0).getstate()
    assert saved["hatrpo"]["order_rng"] != fresh_rng  # two iterations drew agent orders
    plan = plan_seed(pristine / "seed_0", 0)
    rows = restore_seed(built_algo, plan)
    assert [r["training_iteration"] for r in rows] == [1.0, 2.0] and built_algo.iteration == 2
    state = built_algo.learner_group.get_state()["learner"]
    assert state["hatrpo"] == saved["hatrpo"]  # agent-order RNG and allocator state
    for key in ("weights_seq_no", "optimizer"):
        assert _same(state[key], saved[key]), key
    module_file = checkpoint / "learner_group/learner/rl_module/agent_1/module_state.pkl"
    saved_weights = pickle.loads(module_file.read_bytes())
    weights = built_algo.learner_group.get_weights(module_ids=["agent_1"])["agent_1"]
    assert weights.keys() == saved_weights.keys()
    for key, value in weights.items():
        assert np.array_equal(np.asarray(value), np.asarray(saved_weights[key])), key
    # The env-step counter continues: the next iteration reports 300 env steps.
    result = flatten_result(built_algo.train(), AGENTS)
    assert result["training_iteration"] == 3 and result["env_steps"] == 300


def _same(a, b) -> bool:
    """Deep equality of nested state dicts holding arrays or tensors."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, torch.Tensor | np.ndarray) or isinstance(b, torch.Tensor | np.ndarray):
        return np.array_equal(np.asarray(a), np.asarray(b))
    return a == b


def _damage(checkpoint: Path, damage: str) -> None:
    if damage == "no rllib_checkpoint.json":
        (checkpoint / "rllib_checkpoint.json").unlink()
    elif damage == "garbage learner state":
        (checkpoint / LEARNER_STATE).write_bytes(b"\x00garbage")
    elif damage == "truncated module state":
        module = checkpoint / "learner_group/learner/rl_module/agent_1/module_state.pkl"
        module.write_bytes(module.read_bytes()[:100])
    elif damage == "missing module":
        shutil.rmtree(checkpoint / "learner_group/learner/rl_module/agent_0")
    elif damage == "missing learner group":
        shutil.rmtree(checkpoint / "learner_group")


@pytest.mark.parametrize(
    "damage",
    [
        "no rllib_checkpoint.json",
        "garbage learner state",
        "truncated module state",
        "missing module",
        "missing learner group",
    ],
)
def test_damaged_checkpoint_is_refused(two_iterations, built_algo, tmp_path, damage):
    """RLlib alone would skip a missing module silently; every damage must raise instead."""
    _, pristine = two_iterations
    checkpoint = tmp_path / "checkpoint"
    shutil.copytree(pristine / "seed_0" / "checkpoint", checkpoint)
    _damage(checkpoint, damage)
    with pytest.raises(CheckpointError, match=re.escape(str(checkpoint))):
        recover_checkpoint(checkpoint)
        restore_checkpoint(built_algo, checkpoint)


def test_resume_with_damaged_checkpoint_exits_2_naming_path(two_iterations, tmp_path, capsys):
    _, pristine = two_iterations
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    _damage(run / "seed_0" / "checkpoint", "garbage learner state")
    assert main(["train", "--resume", str(run), "--stop-iters", "3"]) == 2
    err = capsys.readouterr().err
    assert "argument --resume" in err and str(run / "seed_0" / "checkpoint") in err
    assert "delete it to train this seed again" in err
    assert _csv(run)["training_iteration"].tolist() == [1, 2]  # nothing trained or cut


def test_resume_without_checkpoint_exits_2_naming_path(two_iterations, tmp_path, capsys):
    _, pristine = two_iterations
    run = tmp_path / "run"
    shutil.copytree(pristine, run)
    shutil.rmtree(run / "seed_0" / "checkpoint")
    assert main(["train", "--resume", str(run), "--stop-iters", "3"]) == 2
    err = capsys.readouterr().err
    assert f"no checkpoint at {run / 'seed_0' / 'checkpoint'}" in err
    assert "--checkpoint-every" in err


def test_checkpoint_left_at_old_by_an_interrupted_replace_is_used(two_iterations, tmp_path):
    _, pristine = two_iterations
    seed_dir = tmp_path / "seed_0"
    shutil.copytree(pristine / "seed_0", seed_dir)
    (seed_dir / "checkpoint").rename(seed_dir / "checkpoint.old")
    plan = plan_seed(seed_dir, 0)
    assert plan.checkpoint == (seed_dir / "checkpoint").absolute()
    assert "checkpoint.old" in plan.note and (seed_dir / "checkpoint").is_dir()
    assert not (seed_dir / "checkpoint.old").exists()


def test_seed_that_never_finished_an_iteration_starts_afresh(tmp_path):
    plan = plan_seed(tmp_path / "seed_3", 3)
    assert plan.checkpoint is None and "from the start" in plan.note


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--allocator", "kkt"], "--allocator"),
        (["--train-batch-size", "400"], "--train-batch-size"),
        (["--seeds", "0", "1"], "--seeds"),
        (["--output", "elsewhere"], "--output"),
    ],
)
def test_resume_with_conflicting_flag_exits_2(two_iterations, capsys, flags, flag):
    _, pristine = two_iterations
    assert main(["train", "--resume", str(pristine), *flags]) == 2
    err = capsys.readouterr().err
    assert f"argument {flag}" in err and "resumed" in err


def test_resume_of_a_directory_without_args_json_exits_2(tmp_path, capsys):
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert f"{tmp_path} has no args.json" in capsys.readouterr().err


def test_merge_flags_keeps_saved_settings_and_replaces_stop_criteria():
    from rllib_hatrpo.cli.train import flags

    defaults = flags(build_parser().parse_args(["train"]))
    saved = {**defaults, "run": None, "parser": None, "stop_iters": 2, "stop_timesteps": 900}
    saved.update(allocator="kkt", hidden_sizes=[8, 8], output="runs/x", seeds=[0, 1])
    given = {"stop_iters": 5, "hidden_sizes": [8, 8], "num_cpus": 3, "seeds": [0, 1]}
    merged = merge_flags(saved, given, defaults, Path("runs/x"))
    assert merged["allocator"] == "kkt" and merged["hidden_sizes"] == [8, 8]
    assert merged["stop_iters"] == 5 and merged["stop_timesteps"] is None
    assert merged["num_cpus"] == 3 and merged["resume"] == Path("runs/x")
    assert set(merged) == set(defaults)  # saved entries that are not flags are dropped
    assert isinstance(argparse.Namespace(**merged).seeds, list)


def test_truncate_metrics_csv_keeps_rows_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.csv"
    with MetricsCsv(path, AGENTS) as csv:
        for i in (1, 2, 3):
            csv.append({"training_iteration": i, "env_steps": 10 * i})
    lines = path.read_text().splitlines()
    rows = truncate_metrics_csv(path, 2)
    assert [r["env_steps"] for r in rows] == [10, 20]
    assert path.read_text().splitlines() == lines[:3]
    with MetricsCsv(path, AGENTS, append=True) as csv:
        csv.append({"training_iteration": 3, "env_steps": 31})
    assert pd.read_csv(path)["env_steps"].tolist() == [10, 20, 31]
    with pytest.raises(ValueError, match=re.escape("iterations 1..4")):
        truncate_metrics_csv(path, 4)
    with pytest.raises(ValueError, match="other columns"):
        MetricsCsv(path, ["agent_0"], append=True)
