"""The comparison report's arithmetic (benchmarks/compare.py) on synthetic learning curves."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pandas as pd
import pytest

from rllib_hatrpo.tune_support import final_return

_PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "compare.py"
_spec = importlib.util.spec_from_file_location("compare", _PATH)
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)


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
    summary = compare.summarize(curves, {"t": 3000}).set_index("method")
    assert summary.loc["uniform", "final_mean"] == -50
    assert summary.loc["kkt", "final_mean"] == -41
    # (R_kkt − R_uniform) / |R_uniform| = (−41 + 50) / 50
    assert summary.loc["kkt", "gain_vs_uniform"] == pytest.approx(0.18)
    assert summary.loc["kkt", "seed_variance"] == pytest.approx(1.0)
    assert summary.loc["kkt", "final_std"] == pytest.approx(1.0)
    # Target: best final (−41) − 1 % of 41 = −41.41; kkt's seed mean is −40 at 2,000 steps.
    assert summary.loc["kkt", "steps_to_99pct"] == 2000
    assert math.isnan(summary.loc["uniform", "steps_to_99pct"])
    table = compare.markdown(summary.reset_index())
    assert "+18.0 %" in table and "-41.0 ± 1.0" in table


def test_mean_curve_only_counts_steps_every_seed_reached():
    curves = _curves({("uniform", 0): [1, 2, 3], ("uniform", 1): [3, 4]})
    assert compare.mean_curve(curves).to_dict() == {1000: 2.0, 2000: 3.0}
