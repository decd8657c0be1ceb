"""The claims table's measures (benchmarks/claims.py) on synthetic runs."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import _claims_measures as measures
import claims

from rllib_hatrpo.experiments.tune import SEED


def _curves(returns: dict[tuple[str, str, int], list[float]]):
    rows = [
        {
            "task": task,
            "method": method,
            "seed": seed,
            "env_steps": 1000 * (i + 1),
            "team_return": r,
            "time_total_s": 60.0 * (i + 1),
        }
        for (task, method, seed), values in returns.items()
        for i, r in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_steps_to_99_percent_of_the_curves_own_best():
    # Seed mean: 10, 50, 99.5, 100 -> first count >= 99 is 3,000.
    runs = _curves({("t", "kkt", 0): [10, 40, 99, 100], ("t", "kkt", 1): [10, 60, 100, 100]})
    assert measures.steps_to_99(runs) == 3000
    # A negative curve: best -50, target -50.5.
    runs = _curves({("t", "kkt", 0): [-90, -50.4, -50]})
    assert measures.steps_to_99(runs) == 2000


def test_gain_rows_pair_the_methods_per_task_and_skip_tasks_without_two_seeds_of_both():
    a = (("uniform", 100.0), ("kkt", 120.0), ("greedy", 90.0))
    b = (("uniform", -50.0), ("kkt", -45.0))
    curves = _curves(
        {
            **{("a", method, seed): [r] * 10 for method, r in a for seed in (0, 1)},
            **{("b", method, seed): [r] * 10 for method, r in b for seed in (0, 1)},
            ("b", "greedy", 0): [-40.0] * 10,  # b: one greedy seed, too few to count
            ("c", "uniform", 0): [10.0] * 10,  # c: one seed of each
            ("c", "kkt", 0): [20.0] * 10,
        }
    )
    table = measures.finals(curves)
    assert sorted(measures.paired(table, "uniform", "greedy")) == ["a"]
    assert sorted(measures.paired(table, "uniform", "kkt")) == ["a", "b"]
    rows = {row[0]: row for row in measures.mamujoco_rows(curves, "1,000 env steps per run")}
    # W: mean of +20 % (a) and +10 % (b), not c's +100 %; equal seeds: the interval is the point.
    assert rows["W's final-return gain over HATRPO"][2].startswith("+15.0 % (95 % CI +15.0 %")
    assert "2 task(s)" in rows["W's final-return gain over HATRPO"][2]
    assert rows["G's final-return gain over HATRPO"][2].startswith("-10.0 %")
    assert rows["(control) G's gain over W with carry-over, which spends as much KL"][2] == (
        measures.no_runs(2)
    )
    assert rows["W reaches 99 % of its best sooner"][2] == "1.00× HATRPO's env steps (2 task(s))"


def test_a_seed_only_one_method_has_finished_does_not_move_the_comparison():
    curves = _curves(
        {
            **{("a", "uniform", seed): [100.0 + seed] * 10 for seed in (0, 1)},
            ("a", "uniform", 2): [10.0] * 10,  # kkt has not finished seed 2 yet
            **{("a", "kkt", seed): [120.0 + seed] * 10 for seed in (0, 1, 3)},
            ("b", "uniform", 0): [1.0] * 10,
            ("b", "kkt", 1): [2.0] * 10,  # no common seed
        }
    )
    table = measures.finals(curves)
    uniform, kkt = measures.paired(table, "uniform", "kkt")["a"]
    assert uniform.tolist() == [100.0, 101.0] and kkt.tolist() == [120.0, 121.0]
    rows = {row[0]: row[1:] for row in measures.per_task_rows(table)}
    assert rows["a"][0].startswith("+19.9 % (95 % CI") and rows["a"][0].endswith("; n = 2)")
    assert rows["b"][0] == "—"
    ratio, tasks = measures.per_task_ratio(curves, "kkt", lambda runs: runs[SEED].unique().sum())
    assert (ratio, tasks) == (1.0, 1)  # seeds 0 + 1 of each on a (all seeds: 4 / 3); b: none


def test_per_task_rows_give_each_tasks_own_interval_and_a_dash_without_both_methods():
    curves = _curves(
        {
            ("a", "uniform", 0): [100.0] * 10,
            ("a", "uniform", 1): [100.0] * 10,
            ("a", "kkt", 0): [120.0] * 10,
            ("a", "kkt", 1): [120.0] * 10,
            ("b", "uniform", 0): [-50.0] * 10,
            ("b", "kkt", 0): [-45.0] * 10,
            ("b", "greedy", 0): [-40.0] * 10,
        }
    )
    rows = {row[0]: row[1:] for row in measures.per_task_rows(measures.finals(curves))}
    assert len(rows["a"]) == len(measures.PER_TASK_HEADER) - 1
    # Task a alone: +20 %, not the +15 % mean with b; equal finals, so the interval is the point.
    assert rows["a"][0] == "+20.0 % (95 % CI +20.0 % to +20.0 %; n = 2)"
    assert rows["a"][1:] == ("—", "—", "—")  # no greedy or kkt_carry run on a
    # b: one common seed, so no spread to bootstrap: the point alone.
    assert rows["b"] == (
        "+10.0 % (n = 1, no interval)",
        "+20.0 % (n = 1, no interval)",
        "—",
        "— (n = 1, no interval)",
    )


def test_campaign_command_and_the_marked_block(tmp_path):
    plan = {"env_steps": 2000, "methods": ["uniform", "kkt"], "seeds": [0, 1]}
    command, budget = claims.campaign_command({"a": plan, "b": plan})
    assert command == (
        "python benchmarks/compare.py --tasks a b --methods uniform kkt --seeds 0 1 "
        "--env-steps 2000"
    )
    assert budget == "2,000 env steps per run"
    assert claims.campaign_command({"a": plan, "b": {**plan, "seeds": [0]}})[1] == "per task"
    page = tmp_path / "results.md"
    page.write_text(f"intro\n{claims.BEGIN}\nold\n{claims.END}\nrest\n")
    claims.write_block(page, "new")
    assert page.read_text() == f"intro\n{claims.BEGIN}\nnew\n{claims.END}\nrest\n"
    page.write_text("no markers")
    with pytest.raises(SystemExit, match="add the lines"):
        claims.write_block(page, "new")


def test_a_controls_runs_join_the_tasks_of_the_campaign_at_its_budget(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(claims, "DATA", tmp_path)
    control = tmp_path / claims.CONTROLS[0]
    (control / "a").mkdir(parents=True)
    _curves({("a", "ppo_bootstrap", 0): [1.0, 2.0]}).drop(columns="task").to_csv(
        control / "a" / "ppo_bootstrap_seed0.csv", index=False
    )
    plan = {"methods": ["ppo_bootstrap"], "seeds": [0], "env_steps": 2000}
    (control / "campaign.json").write_text(json.dumps({"a": plan}))
    frame, *others = claims.control_curves({"a": {"env_steps": 2000}})
    assert all(other.empty for other in others)  # the controls without a campaign yet
    assert set(frame["task"]) == {"a"} and list(frame["team_return"]) == [1.0, 2.0]
    assert claims.control_commands()[0].endswith(
        f"--out results/{claims.CONTROLS[0]} --data docs/data/{claims.CONTROLS[0]}"
    )
    assert claims.control_curves({"b": {"env_steps": 2000}})[0].empty  # not a campaign task
    with pytest.raises(SystemExit, match="a trained to 2,000 env steps, the campaign to 4,000"):
        claims.control_curves({"a": {"env_steps": 4000}})


def test_the_longer_campaign_adds_its_own_rows_and_command(tmp_path, monkeypatch):
    import json

    monkeypatch.setattr(claims, "DATA", tmp_path)
    monkeypatch.setattr(claims, "toy_rows", lambda: [])
    monkeypatch.setattr(claims, "speed_rows", lambda: [])
    for folder, budget, returns in (("compare", 2000, [1.0, 2.0]), (claims.LONG, 3000, [4.0] * 3)):
        (tmp_path / folder / "a").mkdir(parents=True)
        for (method, offset), seed in itertools.product((("uniform", 0.0), ("kkt", 1.0)), (0, 1)):
            run = _curves({("a", method, seed): [r + offset for r in returns]})
            run.drop(columns="task").to_csv(tmp_path / folder / "a" / f"{method}_seed{seed}.csv")
        plan = {"methods": ["uniform", "kkt"], "seeds": [0, 1], "env_steps": budget}
        (tmp_path / folder / "campaign.json").write_text(json.dumps({"a": plan}))
    text = claims.claims_text("compare")
    gains = [line for line in text.splitlines() if line.startswith("| W's final-return gain")]
    assert len(gains) == 2
    assert "+50.0 %" in gains[0] and "2,000 env steps per run | A |" in gains[0]
    assert "+25.0 %" in gains[1] and "3,000 env steps per run | D |" in gains[1]
    assert f"--out results/{claims.LONG} --data docs/data/{claims.LONG}`" in text
    # Compute: 4 runs of 2 minutes (A) and 4 of 3 (D).
    assert "| A | a | 4 | 0.1 | uniform 2 (2–2, 2); kkt 2 (2–2, 2) |" in text
    assert "| D | a | 4 | 0.2 |" in text and "In all 8 runs, 0.3 hours of training." in text


def test_time_per_iteration_is_the_side_by_side_median_over_uniforms_mean_over_tasks(tmp_path):
    times = {"2x3": (1.0, 1.2, 1.5), "6x1": (2.0, 3.0, 5.0)}  # uniform, kkt, greedy
    rows = [
        {"task": task, "method": method, "phase": phase, "iter_s": seconds}
        for task, row in times.items()
        for method, base in zip(("uniform", "kkt", "greedy"), row, strict=True)
        for phase, seconds in (("pipeline", base), ("pipeline", 3 * base), ("raw_env", 9.0))
    ]
    rows.append({"task": "2x3", "method": "kkt", "phase": "pipeline", "iter_s": 0.1})
    path = tmp_path / "throughput.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    w, g = claims.speed_rows(path)
    # kkt on 2x3: the median of 0.1, 1.2, 3.6 over uniform's of 1, 3 is 1.2 / 2 = 0.6.
    assert w[:3] == (
        "W's time per iteration",
        "similar",
        "1.05× HATRPO's seconds (HalfCheetah 2x3 0.60×, 6x1 1.50×)",
    )
    assert g[2] == "2.00× HATRPO's seconds (HalfCheetah 2x3 1.50×, 6x1 2.50×)"
    assert w[4] == g[4] == "E"


def test_a_campaign_without_the_carry_over_control_gets_no_control_row():
    curves = _curves({("a", m, s): [100.0 + s] * 10 for m in ("uniform", "kkt") for s in (0, 1)})
    rows = measures.mamujoco_rows(curves, "budget", "D", methods={"uniform", "kkt", "greedy"})
    names = [row[0] for row in rows]
    assert "(control) G's gain over W with carry-over, which spends as much KL" not in names
    assert names[:3] == [
        "W's final-return gain over HATRPO",
        "G's final-return gain over HATRPO",
        "G's seed variance over W's",
    ]
    assert all(row[4] == "D" for row in rows)


def test_compute_rows_count_each_runs_last_clock_reading_per_command_and_task():
    a = _curves(
        {
            ("t", "kkt", 0): [1.0] * 3,  # 3 minutes
            ("t", "uniform", 0): [1.0] * 2,  # 2 minutes
            ("t", "uniform", 1): [1.0] * 6,  # 6 minutes
            ("u", "ppo", 0): [1.0] * 30,  # 30 minutes
        }
    )
    control = _curves({("t", "ppo_bootstrap", 0): [1.0] * 90})
    rows = claims.compute_rows([("A", a), ("A, control", control), ("D", pd.DataFrame())])
    assert len(rows[0]) == len(claims.COMPUTE_HEADER)
    # Methods in the tables' order (uniform before kkt), each: median (min–max, runs).
    assert rows == [
        ("A", "t", 3, 0.2, "uniform 4 (2–6, 2); kkt 3 (3–3, 1)"),
        ("A", "u", 1, 0.5, "ppo 30 (30–30, 1)"),
        ("A, control", "t", 1, 1.5, "ppo_bootstrap 90 (90–90, 1)"),
    ]


def test_a_variance_ratio_needs_three_common_seeds_per_task():
    # Two seeds resample to a variance of 0 or the variance itself, so an interval over them
    # spans just those two values: the variance claim waits for a third common seed.
    finals = {"kkt": [100.0, 140.0, 120.0], "greedy": [100.0, 110.0, 105.0]}
    two = _curves({("a", m, s): [v[s]] * 10 for m, v in finals.items() for s in (0, 1)})
    three = _curves({("a", m, s): [v[s]] * 10 for m, v in finals.items() for s in (0, 1, 2)})
    claim = "G's seed variance over W's"
    rows = {row[0]: row[2] for row in measures.mamujoco_rows(two, "1,000 env steps per run")}
    assert rows[claim] == measures.no_runs(3)
    assert rows["(control) G's gain over W with carry-over, which spends as much KL"] == (
        measures.no_runs(2)
    )
    cells = dict(
        zip(measures.PER_TASK_HEADER, measures.per_task_rows(measures.finals(two))[0], strict=True)
    )
    assert cells["var G / var W − 1"] == "-93.8 % (n = 2, no interval)"  # 25 / 400 − 1
    rows = {row[0]: row[2] for row in measures.mamujoco_rows(three, "1,000 env steps per run")}
    assert rows[claim].startswith("-93.8 % (95 % CI") and "common seeds a 3" in rows[claim]
