"""The comparison's raw results and report arithmetic (benchmarks/compare.py,
benchmarks/_compare_report.py) on synthetic learning curves."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pandas as pd
import pytest

from rllib_hatrpo.experiments.summaries import final_return

_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
_spec = importlib.util.spec_from_file_location("compare", _BENCHMARKS / "compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)
report = sys.modules["_compare_report"]


def _curves(returns: dict[tuple[str, int], list[float]]) -> pd.DataFrame:
    rows = [
        {"task": "t", "method": method, "seed": seed, "env_steps": 1000 * (i + 1), "team_return": r}
        for (method, seed), values in returns.items()
        for i, r in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_final_return_averages_the_last_tenth_and_skips_nan():
    run = pd.DataFrame({"env_steps": range(1, 21), "team_return": [0.0] * 18 + [4.0, 6.0]})
    assert final_return(run) == 5.0
    run.loc[19, "team_return"] = math.nan  # 19 finite values: last ceil(1.9) = 2 of them
    assert final_return(run) == 2.0


def test_summary_gain_variance_and_steps_to_99_percent():
    curves = _curves(
        {
            ("uniform", 0): [-100, -60, -50],
            ("uniform", 1): [-100, -60, -50],
            ("kkt", 0): [-100, -40, -40],
            ("kkt", 1): [-100, -40, -42],
        }
    )
    summary = report.summarize(curves, {"t": 3000}).set_index("method")
    assert summary.loc["uniform", "final_mean"] == -50
    assert summary.loc["kkt", "final_mean"] == -41
    # (R_kkt − R_uniform) / |R_uniform| = (−41 + 50) / 50
    assert summary.loc["kkt", "gain_vs_uniform"] == pytest.approx(0.18)
    assert summary.loc["kkt", "seed_variance"] == pytest.approx(1.0)
    assert summary.loc["kkt", "final_std"] == pytest.approx(1.0)
    # Target: best final (−41) − 1 % of 41 = −41.41; kkt's seed mean is −40 at 2,000 steps.
    assert summary.loc["kkt", "steps_to_99pct"] == 2000
    assert math.isnan(summary.loc["uniform", "steps_to_99pct"])
    table = report.markdown(summary.reset_index())
    assert "+18.0 %" in table and "-41.0 ± 1.0" in table


def test_the_gain_vs_uniform_counts_the_seeds_both_have_finished():
    curves = _curves({("uniform", 0): [100.0], ("uniform", 1): [10.0], ("kkt", 0): [110.0]})
    summary = report.summarize(curves, {"t": 1000}).set_index("method")
    assert summary.loc["kkt", "gain_vs_uniform"] == pytest.approx(0.10)  # seed 0 alone
    assert summary.loc["uniform", "final_mean"] == 55.0  # each method's own seeds
    lone = _curves({("uniform", 0): [100.0], ("kkt", 1): [110.0]})
    assert math.isnan(report.summarize(lone, {}).set_index("method").loc["kkt", "gain_vs_uniform"])


def test_a_table_without_uniform_shows_no_gain():
    curves = _curves({("ppo_bootstrap", 0): [-100, -60, -50]})
    table = report.markdown(report.summarize(curves, {"t": 3000}))
    assert "nan" not in table
    assert table.splitlines()[2].split("|")[7].strip() == "—"
    assert "mean gain vs uniform over tasks" not in table  # no gain without a uniform run


def test_mean_curve_only_counts_steps_every_seed_reached():
    curves = _curves({("uniform", 0): [1, 2, 3], ("uniform", 1): [3, 4]})
    assert report.mean_curve(curves).to_dict() == {1000: 2.0, 2000: 3.0}


def _spend_curves() -> pd.DataFrame:
    """Two seeds of uniform, greedy and kkt_carry with Σ KL per iteration, and PPO without."""
    spends = {"uniform": [0.010, 0.012], "greedy": [0.016, 0.018], "kkt_carry": [0.015, 0.019]}
    curves = _curves({(m, s): [-50, -40] for m in [*spends, "ppo"] for s in (0, 1)})
    for method, (seed_0, seed_1) in spends.items():
        for seed, spend in ((0, seed_0), (1, seed_1)):
            rows = (curves["method"] == method) & (curves["seed"] == seed)
            curves.loc[rows, "kl_total"] = [spend - 0.001, spend + 0.001]
            curves.loc[rows, "total_kl_budget"] = 0.02
    return curves


def test_summary_reports_the_kl_spent_per_iteration_of_every_allocator():
    summary = report.summarize(_spend_curves(), {"t": 2000}).set_index("method")
    # Each run's mean Σ KL per iteration; then mean and population std over seeds.
    assert summary.loc["uniform", "kl_total_mean"] == pytest.approx(0.011)
    assert summary.loc["uniform", "kl_total_std"] == pytest.approx(0.001)
    assert summary.loc["greedy", "kl_total_mean"] == pytest.approx(0.017)
    assert summary.loc["greedy", "kl_spend_fraction"] == pytest.approx(0.85)
    assert summary.loc["kkt_carry", "kl_total_mean"] == pytest.approx(0.017)
    assert math.isnan(summary.loc["ppo", "kl_total_mean"])
    table = report.markdown(summary.reset_index())
    assert "| Σ KL / iteration |" in table.splitlines()[0]
    assert "0.017 ± 0.001 (85 % of δ_total)" in table
    assert "0.011 ± 0.001 (55 % of δ_total)" in table
    (ppo_row,) = [line for line in table.splitlines() if line.startswith("| t | RLlib PPO |")]
    assert ppo_row.endswith("| — |")  # PPO has no KL budget


def test_kl_total_plot_is_written(tmp_path):
    path = tmp_path / "kl_total_t.png"
    report.plot_task(_spend_curves(), "t", path, column="kl_total")
    assert path.stat().st_size > 0


class _FakeConfig:
    def __init__(self, **training):
        self.kl_allocator_config = {}
        self.training(**training)

    def training(self, **settings):
        self.__dict__.update(settings)
        return self


class _FakeTask:
    def build_trial_config(self, params):
        params = dict(params)
        return _FakeConfig(kl_allocator=params.pop("method"), **params)


def test_kkt_carry_is_kkt_with_carry_over_and_opt_in():
    config = compare.trial_config(_FakeTask(), {"method": "kkt_carry", "seed": 3})
    assert config.kl_allocator == "kkt" and config.seed == 3
    assert config.kl_allocator_config == {"carry_over": True}
    assert compare.trial_config(_FakeTask(), {"method": "kkt"}).kl_allocator_config == {}
    assert "kkt_carry" not in compare.parse_args([]).methods
    assert compare.parse_args(["--methods", "kkt_carry", "greedy"]).methods == [
        "kkt_carry",
        "greedy",
    ]


def test_an_interrupted_experiment_counts_its_trials_short_of_the_budget():
    """Tune's ``fit`` returns normally when interrupted: the campaign must not move on."""

    class Result:
        def __init__(self, env_steps, error=None):
            self.metrics = {} if env_steps is None else {"env_steps": env_steps}
            self.error = error

    results = [Result(2000), Result(1200), Result(None), Result(400, error=RuntimeError())]
    assert compare.unfinished(results, 2000) == 2  # 1,200 steps and nothing reported yet
    assert compare.unfinished(results[:1], 2000) == 0


def _tune_trial(folder, params, iterations, env_steps, returns):
    folder.mkdir(parents=True)
    (folder / "params.json").write_text(json.dumps(params))
    rows = {
        "training_iteration": iterations,
        "env_steps": env_steps,
        "team_return": returns,
        "agent_0/kl": [0.01] * len(returns),
        "hostname": ["node"] * len(returns),  # Tune's bookkeeping: not kept
    }
    pd.DataFrame(rows).to_csv(folder / "progress.csv", index=False)


def test_finished_trials_are_exported_and_the_table_is_made_from_the_copies(tmp_path):
    tune_dir, data = tmp_path / "tune", tmp_path / "data"
    campaign = {"t": {"env_steps": 3000, "methods": ["uniform", "kkt"], "seeds": [0]}}
    _tune_trial(
        tune_dir / "t" / "a",
        {"method": "uniform", "seed": 0},
        [1, 2, 3],
        [1000, 2000, 3000],
        [1.0, 2.0, 3.0],
    )
    # Restored after iteration 1: iteration 2 reported twice, the restored run's row kept.
    _tune_trial(
        tune_dir / "t" / "b",
        {"method": "kkt", "seed": 0},
        [1, 2, 2, 3],
        [1000, 2000, 2000, 3000],
        [1.0, 9.0, 2.5, 4.0],
    )
    _tune_trial(tune_dir / "t" / "c", {"method": "greedy", "seed": 0}, [1], [1000], [5.0])
    written = report.export_finished(tune_dir, data, campaign)
    assert sorted(p.name for p in written) == ["kkt_seed0.csv", "uniform_seed0.csv"]
    kkt = pd.read_csv(data / "t" / "kkt_seed0.csv")
    assert list(kkt.columns) == [
        "method",
        "seed",
        "training_iteration",
        "env_steps",
        "team_return",
        "agent_0/kl",
    ]
    assert kkt["team_return"].tolist() == [1.0, 2.5, 4.0]
    # The Tune folder can go: the table comes from the raw results alone.
    table = report.report(tmp_path / "gone", data, ["t"], campaign)
    assert "| t | HATRPO-W (kkt) | 1 | 3,000 | 4.0 ± 0.0 |" in table
    assert "greedy" not in table  # unfinished: not exported, not reported
    assert (data / "summary.csv").is_file() and (data / "curves_t.png").is_file()


def test_a_rerun_without_tune_folders_trains_only_the_runs_not_recorded(tmp_path):
    """The raw results are what a checkout keeps: recorded runs are not trained again."""
    tune_dir, data = tmp_path / "tune", tmp_path / "data"
    plan = {"env_steps": 2000, "methods": ["uniform", "kkt", "greedy"], "seeds": [0, 1]}
    _tune_trial(tune_dir / "t" / "a", {"method": "kkt", "seed": 1}, [1, 2], [1000, 2000], [1, 2])
    _tune_trial(tune_dir / "t" / "b", {"method": "uniform", "seed": 0}, [1], [1000], [1.0])
    report.export_finished(tune_dir, data, {"t": plan})
    (data / "t" / "uniform_seed0.csv").write_text(  # short of the budget: trained again
        "method,seed,env_steps,team_return\nuniform,0,1000,1.0\n"
    )
    recorded = report.recorded_runs(data, "t", 2000)
    assert recorded == {("kkt", 1)}
    assert report.recorded_runs(data, "t", 3000) == set()
    assert report.recorded_runs(data, "other", 2000) == set()
    assert compare.runs_to_train(plan, recorded) == [
        {"method": "uniform", "seed": 0},
        {"method": "kkt", "seed": 0},
        {"method": "greedy", "seed": 0},
        {"method": "uniform", "seed": 1},
        {"method": "greedy", "seed": 1},
    ]


def test_allocation_plots_of_each_hatrpo_method_lowest_seed(tmp_path):
    curves = _spend_curves()
    curves["task"] = "t"
    for agent in ("a", "b"):
        curves[f"{agent}/kl_budget"] = 0.01
        curves[f"{agent}/kl"] = 0.008
        curves[f"{agent}/line_search_accepted"] = 1.0
    paths = report.plot_allocations(curves, "t", tmp_path)
    assert sorted(p.name for p in paths) == [
        "allocation_t_greedy_seed0.png",
        "allocation_t_kkt_carry_seed0.png",
        "allocation_t_uniform_seed0.png",
    ]  # PPO: no KL budget, no plot
    assert all(p.stat().st_size > 0 for p in paths)


def test_ppo_bootstrap_is_rllibs_ppo_sampled_by_the_team_runner():
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    from rllib_hatrpo.team_env_runner import TeamEnvRunner

    task = compare.load_tasks()["halfcheetah_2x3"]
    control = compare.trial_config(task, {"method": "ppo_bootstrap", "seed": 1})
    shipped = compare.trial_config(task, {"method": "ppo", "seed": 1})
    assert control.env_runner_cls is TeamEnvRunner
    assert shipped.env_runner_cls in (None, MultiAgentEnvRunner)
    assert type(control).__name__ == type(shipped).__name__ == "PPOConfig"
    assert control.seed == shipped.seed == 1
    assert control.vf_clip_param == shipped.vf_clip_param == 10.0  # RLlib's default
    noclip = compare.trial_config(task, {"method": "ppo_bootstrap_noclip", "seed": 1})
    assert noclip.env_runner_cls is TeamEnvRunner and noclip.vf_clip_param == math.inf
    assert not {"ppo_bootstrap", "ppo_bootstrap_noclip"} & set(compare.parse_args([]).methods)
    methods = report.METHODS
    assert methods.index("ppo_bootstrap") == methods.index("ppo") + 1


def test_a_report_for_some_tasks_keeps_the_other_recorded_tasks_in_the_summary(tmp_path):
    """Continuing one task of a campaign (``--tasks`` a subset) must not drop the rows of the
    other tasks recorded in the same raw-results folder."""
    data = tmp_path / "data"
    plan = {"env_steps": 2000, "methods": ["uniform"], "seeds": [0]}
    data.mkdir()
    (data / "campaign.json").write_text(json.dumps({"walker2d_2x3": plan, "halfcheetah_2x3": plan}))
    for task in ("walker2d_2x3", "halfcheetah_2x3"):
        (data / task).mkdir()
        (data / task / "uniform_seed0.csv").write_text(
            "method,seed,env_steps,team_return\nuniform,0,1000,1.0\nuniform,0,2000,2.0\n"
        )
    out = str(tmp_path / "out")
    compare.main(["--tasks", "halfcheetah_2x3", "--report-only", "--out", out, "--data", str(data)])
    summary = (data / "summary.md").read_text()
    assert "| halfcheetah_2x3 | HATRPO (uniform) |" in summary
    assert "| walker2d_2x3 | HATRPO (uniform) |" in summary
