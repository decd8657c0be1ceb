"""The ``hatrpo`` command line, run in-process through ``main([...])`` on one shared Ray instance.

``main`` leaves a Ray instance it did not start running, so the module-scoped ``ray_session``
(tests/conftest.py) serves every training run here and shuts Ray down at the end.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import shutil
import struct
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rllib_hatrpo.cli.main import build_parser, main
from rllib_hatrpo.cli.train import resolve_env
from rllib_hatrpo.experiments.loop import StopCriteria
from rllib_hatrpo.experiments.plots import plot_learning_curve, seed_band
from rllib_hatrpo.experiments.records import (
    ITERATION_COLUMNS,
    MetricsCsv,
    flatten_result,
    save_checkpoint_atomically,
)
from rllib_hatrpo.experiments.summaries import seed_summary
from rllib_hatrpo.metrics import KL_BUDGET, PER_AGENT_KEYS, TOTAL_KL_BUDGET

pytestmark = pytest.mark.component

AGENTS = ["agent_0", "agent_1"]


@pytest.fixture(scope="module")
def differential_game_run(ray_session, tmp_path_factory):
    """``hatrpo train`` for 3 iterations of the differential game; (exit code, run dir)."""
    output = tmp_path_factory.mktemp("cli") / "run"
    return _train_differential_game(output, "--stop-iters", "3", "--seeds", "0"), output


def _assert_png(path):
    assert path.is_file(), path
    with Image.open(path) as image:
        image.verify()
        assert image.format == "PNG"


def test_train_writes_checkpoint_metrics_and_plots(differential_game_run):
    code, output = differential_game_run
    assert code == 0
    run = output / "seed_0"
    assert (run / "checkpoint" / "rllib_checkpoint.json").is_file()
    assert not (run / "checkpoint.tmp").exists() and not (run / "checkpoint.old").exists()
    frame = pd.read_csv(run / "metrics.csv")
    assert list(frame["training_iteration"]) == [1, 2, 3]
    assert list(frame["env_steps"]) == [64, 128, 192]
    expected = {*ITERATION_COLUMNS, *(f"{a}/{k}" for a in AGENTS for k in PER_AGENT_KEYS)}
    assert expected <= set(frame.columns)
    # One-step episodes: every iteration finishes some, so the team return is never missing.
    assert frame["team_return"].notna().all()
    assert (frame["learner_update_time_s"] > 0).all() and (frame["sampling_time_s"] > 0).all()
    _assert_png(run / "learning_curve.png")
    _assert_png(run / "allocation.png")
    assert (output / "args.json").is_file()


def test_train_kkt_budgets_sum_to_total_budget(ray_session, tmp_path):
    code = main(
        [
            "train",
            "--env",
            "mpe",
            "--scenario",
            "simple_spread_v3",
            "--allocator",
            "kkt",
            "--num-env-runners",
            "0",
            "--train-batch-size",
            "200",
            "--stop-iters",
            "2",
            "--output",
            str(tmp_path),
        ]
    )
    assert code == 0
    frame = pd.read_csv(tmp_path / "seed_0" / "metrics.csv")
    assert len(frame) == 2
    budgets = frame[[f"agent_{i}/{KL_BUDGET}" for i in range(3)]]
    np.testing.assert_allclose(budgets.sum(axis=1), frame[TOTAL_KL_BUDGET], rtol=1e-6)


def test_evaluate_prints_team_return(differential_game_run, capsys):
    _, output = differential_game_run
    code = main(["evaluate", str(output / "seed_0" / "checkpoint"), "--episodes", "3"])
    out = capsys.readouterr().out
    assert code == 0
    match = re.search(r"team return: (-?\d+\.\d+) ± (\d+\.\d+) over 3 episodes", out)
    assert match, out
    assert math.isfinite(float(match.group(1)))


def test_evaluate_missing_checkpoint_exits_2_naming_path(tmp_path, capsys):
    missing = tmp_path / "nonexistent"
    assert main(["evaluate", str(missing)]) == 2
    assert str(missing) in capsys.readouterr().err


@pytest.mark.parametrize(
    "damaged",
    ["class_and_ctor_args.pkl", "learner_group/learner/rl_module/agent_1/module_state.pkl"],
)
def test_evaluate_corrupted_checkpoint_exits_2(differential_game_run, tmp_path, capsys, damaged):
    """A damaged file must stop evaluate, never let it run an untrained policy."""
    _, output = differential_game_run
    copy = tmp_path / "checkpoint"
    shutil.copytree(output / "seed_0" / "checkpoint", copy)
    (copy / damaged).write_bytes(b"not a pickle")
    assert main(["evaluate", str(copy), "--episodes", "1"]) == 2
    assert str(copy) in capsys.readouterr().err


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--allocator-config", "{"], "--allocator-config"),
        (["--allocator", "kkt", "--allocator-config", '{"bogus": 1}'], "--allocator-config"),
        (["--allocator", "fancy"], "--allocator"),
        (["--allocator", "builtins:dict"], "--allocator"),
        (["--env", "no_such_env"], "--env"),
        (["--env", "no_such_module:Env"], "--env"),
        (["--env", "differential_game", "--agent-conf", "2x3"], "--agent-conf"),
        (["--env-config", "[1, 2]"], "--env-config"),
        (["--hidden-sizes", "128,x"], "--hidden-sizes"),
    ],
)
def test_usage_errors_exit_2_naming_the_flag(tmp_path, capsys, args, flag):
    assert main(["train", "--output", str(tmp_path), *args]) == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "seed_0").exists()


@pytest.mark.parametrize(
    "args, env_config, label",
    [
        ([], {"scenario": "simple_spread_v3"}, "mpe"),
        (
            ["--env", "mamujoco", "--scenario", "Ant", "--agent-conf", "4x2", "--agent-obsk", "0"],
            {"scenario": "Ant", "agent_conf": "4x2", "agent_obsk": 0},
            "mamujoco",
        ),
        (["--env", "matrix_game", "--scenario", "penalty"], {"game": "penalty"}, "matrix_game"),
        (
            ["--env", "rllib_hatrpo.envs.toy_games:DifferentialGameEnv", "--scenario", "x"],
            {"scenario": "x"},
            "DifferentialGameEnv",
        ),
        (
            ["--env", "mpe", "--continuous-actions", "--env-config", '{"max_cycles": 5}'],
            {"scenario": "simple_spread_v3", "continuous_actions": True, "max_cycles": 5},
            "mpe",
        ),
    ],
)
def test_env_flags_map_to_env_config(args, env_config, label):
    _, config, name = resolve_env(build_parser().parse_args(["train", *args]))
    assert config == env_config and name == label


def test_config_validation_error_is_shown_as_is(tmp_path, capsys):
    code = main(
        ["train", "--env", "mpe", "--env-config", '{"bogus": 1}', "--output", str(tmp_path)]
    )
    assert code == 2
    assert "unknown config key(s) ['bogus']" in capsys.readouterr().err


def _result(team_return=None):
    env_runners = {"num_env_steps_sampled_lifetime": 400.0}
    if team_return is not None:
        env_runners["team_episode_return_mean"] = team_return
    return {
        "training_iteration": 2,
        "time_total_s": 3.0,
        "time_this_iter_s": 1.5,
        "env_runners": env_runners,
        "timers": {"learner_update_timer": 1.0, "env_runner_sampling_timer": 0.4},
        "learners": {
            "__all_modules__": {"kl_total": 0.01, "total_kl_budget": 0.02, "num_proposals": 2},
            "agent_0": {"kl_budget": 0.015, "kl": 0.01, "line_search_accepted": 1.0},
        },
    }


def test_flatten_result_and_csv_keep_missing_values_as_nan(tmp_path):
    row = flatten_result(_result(), AGENTS)
    assert row["env_steps"] == 400 and row["learner_update_time_s"] == 1.0
    assert row["agent_0/kl_budget"] == 0.015
    assert math.isnan(row["team_return"]) and math.isnan(row["agent_1/kl"])
    with MetricsCsv(tmp_path / "m.csv", AGENTS) as csv:
        csv.append(row)
        csv.append(flatten_result(_result(team_return=-5.0), AGENTS))
    frame = pd.read_csv(tmp_path / "m.csv")
    assert frame["team_return"].isna().tolist() == [True, False]
    assert frame["num_proposals"].tolist() == [2, 2]


def test_stop_criteria_first_met_wins_and_nan_return_never_stops():
    row = {"training_iteration": 3, "env_steps": 1000, "team_return": math.nan}
    assert StopCriteria(iters=5).reason(row, 0.0) is None
    assert StopCriteria(iters=3).reason(row, 0.0) == "3 iterations"
    assert StopCriteria(timesteps=1000).reason(row, 0.0) == "1000 env steps"
    assert StopCriteria(team_return=-1e9).reason(row, 0.0) is None
    assert StopCriteria(time_budget_s=10).reason(row, 10.0) == "time budget 10 s"


class _FakeAlgo:
    def __init__(self, fail=False):
        self.fail = fail

    def save_to_path(self, path):
        path = Path(path)
        path.mkdir(parents=True)
        (path / "payload").write_text("new")
        if self.fail:
            raise OSError("disk full")
        (path / "rllib_checkpoint.json").write_text("{}")


def test_save_checkpoint_atomically_replaces_and_keeps_old_on_failure(tmp_path):
    target = tmp_path / "checkpoint"
    target.mkdir()
    (target / "payload").write_text("old")
    with pytest.raises(OSError):
        save_checkpoint_atomically(_FakeAlgo(fail=True), target)
    assert (target / "payload").read_text() == "old"
    save_checkpoint_atomically(_FakeAlgo(), target)
    assert (target / "payload").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint"]


def test_seed_summary_and_band_over_seeds(tmp_path):
    csvs = []
    for seed, offset in enumerate((0.0, 2.0)):
        path = tmp_path / f"{seed}.csv"
        pd.DataFrame(
            {
                "training_iteration": [1, 2],
                "env_steps": [100, 200],
                "time_total_s": [1.0, 2.0],
                "team_return": [np.nan, 1.0 + offset],
                "kl_total": [0.01, 0.01],
                "skipped_steps": [0, 0],
            }
        ).to_csv(path, index=False)
        csvs.append(path)
    table = seed_summary([0, 1], csvs)
    assert table["seed"].tolist() == ["0", "1", "mean", "std"]
    assert table["final_team_return"].tolist() == [1.0, 3.0, 2.0, 1.0]
    _, mean, std, count = seed_band([(np.array([0.0, 1.0]), np.array([0.0, 2.0]))] * 2)
    np.testing.assert_allclose(mean[[0, -1]], [0.0, 2.0])
    assert (std == 0).all() and (count == 2).all()
    _assert_png(plot_learning_curve(csvs, tmp_path / "curve.png", label="two seeds"))


def test_checkpoint_config_pickle_names_hatrpo(differential_game_run):
    """evaluate reads the config from class_and_ctor_args.pkl: guard its layout (Ray 2.60)."""
    _, output = differential_game_run
    with (output / "seed_0" / "checkpoint" / "class_and_ctor_args.pkl").open("rb") as f:
        ctor = pickle.load(f)
    config = ctor["ctor_args_and_kwargs"][0][0]
    assert ctor["class"].__name__ == "HATRPO"
    assert sorted(config["policies"]) == AGENTS


@pytest.mark.parametrize(
    ("argv", "batch"),
    [
        (["--env", "differential_game"], 256),
        (["--env", "matrix_game"], 256),
        (["--env", "differential_game", "--train-batch-size", "64"], 64),
        (["--env", "mpe"], 4000),
    ],
)
def test_one_step_games_default_to_a_batch_that_samples_in_time(argv, batch):
    """Before: 4000 one-step episodes per iteration, which could miss the sampling timeout."""
    from rllib_hatrpo.cli.train import build_config, resolve_allocator

    args = build_parser().parse_args(["train", *argv])
    env, env_config, _ = resolve_env(args)
    config = build_config(args, env, env_config, resolve_allocator(args)[0])
    assert config.train_batch_size_per_learner == batch


def test_evaluate_takes_a_relative_checkpoint_path(differential_game_run, monkeypatch, capsys):
    """As the README runs it: ``hatrpo evaluate runs/<run>/seed_0/checkpoint``."""
    _, output = differential_game_run
    monkeypatch.chdir(output.parent)
    assert main(["evaluate", f"{output.name}/seed_0", "--episodes", "1"]) == 0
    assert "over 1 episode (deterministic actions" in capsys.readouterr().out


def test_evaluate_a_checkpoint_of_an_env_registered_by_name(
    differential_game_run, tmp_path, monkeypatch, capsys
):
    """The README's register_env recipe: evaluate takes the factory as ``--env module:obj``.

    Before: refused (its env name is unknown outside the training script), with no way round.
    """
    _, output = differential_game_run
    copy = tmp_path / "checkpoint"
    shutil.copytree(output / "seed_0" / "checkpoint", copy)
    (copy / "manifest.json").unlink()  # as algo.save_to_path in the user's script leaves it
    with (copy / "class_and_ctor_args.pkl").open("rb") as f:
        ctor = pickle.load(f)
    ctor["ctor_args_and_kwargs"][0][0]["env"] = "my_registered_game"
    with (copy / "class_and_ctor_args.pkl").open("wb") as f:
        pickle.dump(ctor, f)
    (tmp_path / "my_game_script.py").write_text(
        "from rllib_hatrpo.envs import DifferentialGameEnv\n\n\n"
        "def make(cfg):\n    return DifferentialGameEnv(cfg)\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".")])
    assert main(["evaluate", "checkpoint", "--episodes", "1"]) == 2
    assert "--env package.module:ClassOrFactory" in capsys.readouterr().err
    assert main(["evaluate", "checkpoint", "--episodes", "1", "--env", "my_game_script:make"]) == 0
    assert "over 1 episode (deterministic actions" in capsys.readouterr().out
    assert main(["evaluate", "checkpoint", "--env", "no_such_env"]) == 2
    assert "argument --env: unknown env 'no_such_env'" in capsys.readouterr().err


def _event_scalars(run_dir: Path) -> dict[tuple[str, int], float]:
    """(tag, step) -> value of the scalars in a folder's one TensorBoard event file."""
    from tensorboardX.proto import event_pb2

    (path,) = run_dir.glob("events.out.tfevents.*")
    data, pos, scalars = path.read_bytes(), 0, {}
    while pos < len(data):  # TFRecords: length (u64), its crc (u32), data, its crc (u32)
        (length,) = struct.unpack("<Q", data[pos : pos + 8])
        event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
        pos += 12 + length + 4
        for value in event.summary.value:
            scalars[value.tag, event.step] = value.simple_value
    return scalars


def test_train_writes_every_csv_column_as_a_tensorboard_scalar(differential_game_run):
    """Before: no event file."""
    _, output = differential_game_run
    scalars = _event_scalars(output / "seed_0")
    frame = pd.read_csv(output / "seed_0" / "metrics.csv")
    expected = {
        (column, int(row["training_iteration"])): row[column]
        for _, row in frame.iterrows()
        for column in frame.columns
        if not pd.isna(row[column])
    }
    assert set(scalars) == set(expected)
    for key, value in expected.items():
        assert scalars[key] == pytest.approx(value, rel=1e-6, abs=1e-30), key


def _train_differential_game(output, *flags):
    return main(
        [
            "train",
            "--env",
            "differential_game",
            "--num-env-runners",
            "0",
            "--train-batch-size",
            "64",
            "--output",
            str(output),
            *flags,
        ]
    )


def test_train_prints_progress_over_seeds_and_hides_known_harmless_warnings(
    ray_session, tmp_path, capsys
):
    """Not a terminal: plain lines, each iteration's with the whole run's percentage and ETA.

    Ray's log handlers keep the stderr of their import, so the hidden message is looked for
    with a handler of its own logger (its filters run before any handler).
    """
    import logging

    seen = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    util_logger = logging.getLogger("ray.tune.utils.util")  # "Install gputil" at every build
    util_logger.addHandler(handler)
    try:
        code = _train_differential_game(tmp_path / "q", "--stop-iters", "2", "--seeds", "0", "1")
        out = capsys.readouterr().out
        quiet = list(seen)
        assert _train_differential_game(tmp_path / "v", "--stop-iters", "1", "--verbose") == 0
    finally:
        util_logger.removeHandler(handler)
    assert code == 0
    assert "\r" not in out
    lines = [line for line in out.splitlines() if re.match(r"seed \d \| iter", line)]
    percentages = [re.search(r"\| +(\d+)% ETA (\d+:\d\d|-)$", line) for line in lines]
    assert all(percentages), lines
    assert [int(m.group(1)) for m in percentages] == [25, 50, 75, 100]
    assert percentages[-1].group(2) == "0:00"
    assert not [m for m in quiet if "Install gputil" in m]
    assert [m for m in seen if "Install gputil" in m]  # --verbose shows it
    # --verbose is no flag of the run: not recorded, and a resume may give it.
    assert "verbose" not in json.loads((tmp_path / "v" / "args.json").read_text())["flags"]
    assert main(["train", "--resume", str(tmp_path / "q"), "--verbose"]) == 0
    assert "seed 1: already finished" in capsys.readouterr().out
