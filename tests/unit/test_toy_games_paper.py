"""The differential game as the paper sets it (bounded actions on [0, 7]², start μ0), and the
report of benchmarks/differential_game.py on synthetic rows."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest

from rllib_hatrpo.envs import GLOBAL_OPTIMUM, LOCAL_OPTIMUM, DifferentialGameEnv
from rllib_hatrpo.envs.toy_games import differential_game_reward

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))


def _step(env, u0, u1):
    env.reset(seed=0)
    actions = {"agent_0": np.array([u0], np.float32), "agent_1": np.array([u1], np.float32)}
    _, rewards, terms, _, infos = env.step(actions)
    assert terms["__all__"]
    return infos["agent_0"]["joint_action"], rewards["agent_0"]


def test_paper_mapping_starts_at_mu0_and_clips_at_the_edges():
    """Default: u = 0 plays the start (2.5, 1.0); a_i = clip(start_i + u_i, 0, 7)."""
    env = DifferentialGameEnv()
    assert env.action_mapping == "paper"
    box = env.action_spaces["agent_0"]
    assert box.shape == (1,) and np.all(np.isinf(box.low)) and np.all(np.isinf(box.high))
    played, reward = _step(env, 0.0, 0.0)
    assert played == pytest.approx((2.5, 1.0))
    assert reward == pytest.approx(differential_game_reward(2.5, 1.0))
    assert _step(env, 10.0, -5.0)[0] == pytest.approx((7.0, 0.0))
    assert _step(env, 2.69, 4.0)[0] == pytest.approx((5.19, 5.0), abs=1e-6)
    env = DifferentialGameEnv({"start": [1.0, 6.0], "low": -1.0, "high": 6.5})
    assert _step(env, -5.0, 1.0)[0] == pytest.approx((-1.0, 6.5))
    assert env.played_action(0.25, 0) == pytest.approx(1.25)


def test_paper_mapping_options_are_checked_and_the_scaled_mapping_stays_reachable():
    with pytest.raises(ValueError, match="start"):
        DifferentialGameEnv({"start": [8.0, 1.0]})
    with pytest.raises(ValueError, match="do not apply"):
        DifferentialGameEnv({"action_mapping": "paper", "action_scale": 10.0})
    with pytest.raises(ValueError, match="action_mapping"):
        DifferentialGameEnv({"action_mapping": "tanh"})
    env = DifferentialGameEnv({"action_mapping": "scaled"})
    assert env.action_spaces["agent_0"] == gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    assert _step(env, 0.5, 2.0)[0] == pytest.approx((5.0, 10.0))


def test_rllib_action_connector_leaves_paper_actions_alone():
    """RLlib's module-to-env step (normalize_actions → unsquash_action, clip_actions →
    clip_action) is the identity on the unbounded boxes of the paper mapping."""
    from ray.rllib.utils.spaces.space_utils import clip_action, unsquash_action

    env = DifferentialGameEnv()
    action = np.array([-3.7], np.float32)
    for space in env.action_spaces.values():
        assert np.array_equal(unsquash_action(action, space), action)
        assert np.array_equal(clip_action(action, space), action)


def _rows(allocator, seed, path):
    """Synthetic runs.csv rows: a straight mean-action path through the given points."""
    rows = []
    for it, (a1, a2) in enumerate(path):
        closer_global = math.hypot(a1 - GLOBAL_OPTIMUM.a1, a2 - GLOBAL_OPTIMUM.a2) < math.hypot(
            a1 - LOCAL_OPTIMUM.a1, a2 - LOCAL_OPTIMUM.a2
        )
        rows.append(
            {
                "game": "differential",
                "allocator": allocator,
                "seed": seed,
                "iteration": it,
                "action_agent_0": a1,
                "action_agent_1": a2,
                "det_return": differential_game_reward(a1, a2),
                "team_return": 0.9,
                "global_basin": float(closer_global),
                "total_kl_budget": 0.02,
                "kl_budget_agent_0": 0.015 if it else math.nan,
                "kl_budget_agent_1": 0.005 if it else math.nan,
                "kl_agent_0": 0.01 if it else math.nan,
                "kl_agent_1": math.nan,
            }
        )
    return rows


def test_report_summarises_and_draws_synthetic_runs(tmp_path):
    """uniform stays local on both seeds; waterfill reaches the global basin on seed 0 from
    iteration 2 on (iteration 3 holds too), and stays local on seed 1."""
    from _differential_game_report import plot_budget_shares, plot_trajectories, summarize
    from _toy_games_run import in_global_basin

    assert in_global_basin([5.0, 5.0]) and not in_global_basin([2.0, 1.0])
    local = [(2.5, 1.0), (2.0, 1.0), (1.5, 1.0), (1.1, 1.0)]
    escape = [(2.5, 1.0), (3.0, 2.0), (4.5, 4.0), (5.2, 5.0)]
    rows = _rows("uniform", 0, local) + _rows("uniform", 1, local)
    rows += _rows("waterfill", 0, escape) + _rows("waterfill", 1, local)
    df = pd.DataFrame(rows)
    summary = summarize(df).set_index("allocator")
    assert summary.loc["uniform", "successes"] == 0
    assert summary.loc["waterfill", "successes"] == 1
    assert summary.loc["waterfill", "median_iters_to_success"] == 2
    assert summary.loc["waterfill", "final_a1_mean"] == pytest.approx((5.2 + 1.1) / 2)
    assert summary.loc["waterfill", "share_agent_0_first10"] == pytest.approx(0.75)
    assert summary.loc["waterfill", "kl_share_agent_0_first10"] == pytest.approx(1.0)
    assert summary.loc["uniform", "median_iters_to_local"] == 3  # (1.1, 1.0) is within 0.2
    setting = {"start": [2.5, 1.0]}
    plot_trajectories(df, "synthetic", setting, tmp_path / "t.png", grid_points=21, dpi=30)
    plot_budget_shares(df, "synthetic", tmp_path / "b.png")
    assert (tmp_path / "t.png").stat().st_size > 0 and (tmp_path / "b.png").stat().st_size > 0


def test_smoothed_gradient_tends_to_the_reward_gradient_for_a_small_std():
    """std → 0: E[R(μ + std·ε)] → R(μ), and its gradient → ∇R(μ) (central differences)."""
    from _differential_game_report import smoothed_gradient

    h = 1e-5
    value, d1, d2 = smoothed_gradient((2.5, 1.0), 1e-3)
    assert value == pytest.approx(differential_game_reward(2.5, 1.0), rel=1e-5)
    r = differential_game_reward
    assert d1 == pytest.approx((r(2.5 + h, 1.0) - r(2.5 - h, 1.0)) / (2 * h), rel=1e-3)
    assert d2 == pytest.approx((r(2.5, 1.0 + h) - r(2.5, 1.0 - h)) / (2 * h), abs=1e-4)
    _, g1, g2 = smoothed_gradient((GLOBAL_OPTIMUM.a1, GLOBAL_OPTIMUM.a2), 1e-3)
    assert abs(g1) < 1e-3 and abs(g2) < 1e-3
