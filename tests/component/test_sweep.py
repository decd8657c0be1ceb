"""``hatrpo tune``: a Tune sweep over allocator × KL × seed that writes CSVs and resumes.

``main`` leaves a Ray instance it did not start running: the module-scoped ``ray_session``
(tests/conftest.py, 2 CPUs) serves the sweep's trials.
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from rllib_hatrpo.cli.main import build_parser, main
from rllib_hatrpo.cli.tune import sweep_spec
from rllib_hatrpo.experiments.checkpoints import MANIFEST_FILE, check_checkpoint_files

pytestmark = pytest.mark.component

SWEEP = [
    "tune",
    "--env",
    "differential_game",
    "--allocators",
    "uniform",
    "kkt",
    "--seeds",
    "0",
    "--train-batch-size",
    "200",
    "--num-envs-per-env-runner",
    "2",
    "--stop-iters",
    "2",
    "--checkpoint-every",
    "1",
    "--max-concurrent-trials",
    "2",
]


def _progress_files(output):
    """Each trial's progress.csv (Tune rewrites them on restore: compare their contents)."""
    return {p: p.read_text() for p in (output / "tune").glob("*/progress.csv")}


def test_search_space_grid_random_and_asha_defaults():
    from ray import tune

    def parse(argv):
        sweep, _ = sweep_spec(build_parser().parse_args(argv))
        return sweep

    grid = parse(["tune", "--kl-values", "0.005", "0.02", "--seeds", "1", "2"]).param_space()
    assert grid["method"] == tune.grid_search(["uniform", "kkt", "greedy"])
    assert grid["kl_threshold"] == tune.grid_search([0.005, 0.02])
    assert grid["seed"] == tune.grid_search([1, 2])
    random_space = parse(
        ["tune", "--num-samples", "4", "--kl-param", "total_kl_budget"]
    ).param_space()
    sampler = random_space["total_kl_budget"]
    assert isinstance(sampler, tune.search.sample.Float)
    assert (sampler.lower, sampler.upper) == (0.001, 0.05)
    sweep = parse(["tune", "--scheduler", "asha", "--stop-timesteps", "40000"])
    assert sweep.asha_settings(batch_size=4000) == ("env_steps", 40000, 4000)
    sweep = parse(["tune", "--scheduler", "asha", "--stop-iters", "30", "--grace-period", "5"])
    assert sweep.asha_settings(batch_size=4000) == ("training_iteration", 30, 5)


@pytest.mark.parametrize(
    "flags, flag",
    [
        (["--allocators", "uniform", "fancy"], "--allocators"),
        (["--allocators", "uniform", "uniform"], "--allocators"),
        (
            ["--allocator-configs", '{"greedy": {"min_share": 0.1}}', "--allocators", "kkt"],
            "--allocator-configs",
        ),
        (["--allocator-configs", '{"kkt": {"bogus": 1}}'], "--allocator-configs"),
        (["--kl-values", "0.01", "--num-samples", "3"], "--num-samples"),
        (["--kl-param", "total_kl_budget"], "--kl-values"),
        (["--num-samples", "3", "--kl-range", "0.1", "0.01"], "--kl-range"),
        (["--grace-period", "3"], "--grace-period"),
        (["--seeds", "1", "1"], "--seeds"),
    ],
)
def test_tune_usage_errors_exit_2_naming_the_flag(tmp_path, capsys, flags, flag):
    assert main(["tune", "--output", str(tmp_path / "out"), *flags]) == 2
    assert f"argument {flag}" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_sweep_trials_use_the_env_suites_batch_like_train():
    """--train-batch-size's default (256 for the one-step games) holds for a sweep too."""
    sweep, label = sweep_spec(build_parser().parse_args(["tune", "--env", "differential_game"]))
    assert label == "differential_game" and sweep.base.train_batch_size == 256
    assert {c.train_batch_size_per_learner for c in sweep.example_configs()} == {256}
    sweep, _ = sweep_spec(build_parser().parse_args(["tune", "--train-batch-size", "64"]))
    assert sweep.base.train_batch_size == 64


def test_sweep_writes_curves_and_summary_resumes_and_extends(ray_session, tmp_path, capsys):
    """Two trials (uniform, kkt) of 1 iteration; the same command with --stop-iters 2; again.

    Both trials were finished: with the larger stop they continue from their iteration-1
    checkpoints (same trial folders, iteration 2's row after iteration 1's, the env steps
    going on) and the plan record says 2. Run again, nothing is trained twice, also when the
    record was not updated (a crash after training). About 30 s on 2 idle cores: three Tune
    runs, each starting a process per trial.
    """
    output = tmp_path / "sweep"
    assert main([*SWEEP, "--output", str(output), "--stop-iters", "1"]) == 0
    trials = sorted(p.parent.name for p in (output / "tune").glob("*/progress.csv"))
    assert len(trials) == 2
    # Each trial's last checkpoint, as Tune stored it, passes the checks of a restore.
    checkpoints = sorted((output / "tune").glob("*/checkpoint_*"))
    assert len(checkpoints) == 2
    for checkpoint in checkpoints:
        assert (checkpoint / MANIFEST_FILE).is_file()
        check_checkpoint_files(checkpoint)
    capsys.readouterr()

    assert main([*SWEEP, "--output", str(output)]) == 0
    out = capsys.readouterr().out
    assert "finished trials continue to the new stop" in out and "best trial: method" in out
    assert sorted(p.parent.name for p in (output / "tune").glob("*/progress.csv")) == trials
    for progress in (output / "tune").glob("*/progress.csv"):
        rows = pd.read_csv(progress)
        assert rows["training_iteration"].tolist() == [1, 2]
        assert rows["env_steps"].tolist() == [200, 400]
    curves = pd.read_csv(output / "curves.csv")
    first = ["method", "seed", "kl_threshold", "training_iteration", "env_steps", "team_return"]
    assert list(curves.columns[: len(first)]) == first
    for method in ("uniform", "kkt"):
        runs = curves[curves["method"] == method]
        assert runs["training_iteration"].tolist() == [1, 2]
        assert runs["env_steps"].tolist() == [200, 400]
        assert (runs["kl_threshold"] == 0.01).all() and runs["team_return"].notna().all()
    summary = pd.read_csv(output / "summary.csv")
    assert sorted(summary["method"]) == ["kkt", "uniform"]
    assert (summary["iterations"] == 2).all() and summary["final_team_return"].notna().all()
    assert json.loads((output / "sweep.json").read_text())["stop_iters"] == 2

    # The same command again restores the experiment and trains nothing more, also when the
    # record still says the old stop (the trials are at the new one already).
    record = json.loads((output / "sweep.json").read_text())
    (output / "sweep.json").write_text(json.dumps({**record, "stop_iters": 1}))
    extended = _progress_files(output)
    assert main([*SWEEP, "--output", str(output)]) == 0
    assert "resuming the sweep" in capsys.readouterr().out
    for progress in (output / "tune").glob("*/progress.csv"):
        assert pd.read_csv(progress)["training_iteration"].tolist() == [1, 2]
    assert set(_progress_files(output)) == set(extended)
    again = pd.read_csv(output / "curves.csv")
    pd.testing.assert_frame_equal(again[first], curves[first])

    # A lower stop, or other seeds, is another sweep: refused before anything runs.
    assert main([*SWEEP, "--output", str(output), "--stop-iters", "1"]) == 2
    assert "holds a sweep started with other flags" in capsys.readouterr().err
    assert main([*SWEEP, "--output", str(output), "--seeds", "0", "1"]) == 2
    assert "holds a sweep started with other flags" in capsys.readouterr().err
