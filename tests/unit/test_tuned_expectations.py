"""The tuned examples' threshold rule and its measurement from campaign runs
(rllib_hatrpo.experiments.summaries.expected_threshold, benchmarks/tuned_expectations.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pandas as pd
import pytest

from rllib_hatrpo.experiments.summaries import expected_threshold

_BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(_BENCHMARKS))
_spec = importlib.util.spec_from_file_location(
    "tuned_expectations", _BENCHMARKS / "tuned_expectations.py"
)
expectations = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(expectations)


def test_threshold_is_the_rule_on_the_lowest_seed_rounded_down():
    # seeds 1,313.56 and 1,500 over a random policy at -257: 1,313.56 - 0.25 * 1,570.56
    assert expected_threshold([1500.0, 1313.56], -257.0) == 920.9
    # below a random policy the margin still lowers the threshold
    assert expected_threshold([-300.0], -257.0) == pytest.approx(-310.8)
    assert expected_threshold([-62.6], -81.5, margin=0.0) == -62.6
    for finals in ([5.0, 7.0], [-4.0], [0.123, 9.0]):
        threshold = expected_threshold(finals, -10.0)
        assert all(threshold <= value for value in finals)


def test_threshold_needs_a_seed():
    with pytest.raises(ValueError, match="finals"):
        expected_threshold([], 0.0)


def test_prefix_keeps_the_iterations_a_run_to_the_budget_trains():
    run = pd.DataFrame({"env_steps": [4008, 1002, 2004, 3006], "team_return": [4, 1, 2, 3]})
    assert list(expectations.prefix(run, 2000)["team_return"]) == [1, 2]
    assert list(expectations.prefix(run, 2004)["team_return"]) == [1, 2]
    with pytest.raises(ValueError, match="4,008 < 5,000"):
        expectations.prefix(run, 5000)


def test_measure_reports_each_method_at_the_tuned_budget(tmp_path):
    class Task:
        name, env_steps, expected = "t", 3000, {"uniform": 1.5}

    runs = pd.DataFrame(
        [
            {"method": "uniform", "seed": s, "env_steps": 1000 * (i + 1), "team_return": r + s}
            for s in (0, 1)
            for i, r in enumerate([0.0, 1.0, 2.0, 5.0, 6.0])
        ]
    )
    (row,) = expectations.measure(Task, runs, random_return=0.0)
    assert row["seeds"] == [0, 1]
    assert row["finals"] == [2.0, 3.0]  # the third iteration: 10 % of 3 iterations is one
    assert row["threshold"] == 1.5  # 2 - 0.25 * 2
    assert row["campaign_finals"] == [6.0, 7.0]
    assert expectations.disagreements({"t": Task}, [row], min_seeds=2) == []
    assert expectations.disagreements({"t": Task}, [row], min_seeds=3) == []
    other = type("Other", (Task,), {"expected": {"uniform": 1.0}})
    assert expectations.disagreements({"t": other}, [row], min_seeds=2) == [
        ("t", "uniform", 1.0, 1.5)
    ]


def test_random_policy_return_plays_whole_episodes_of_the_team_reward():
    import gymnasium as gym
    from ray.rllib.env.multi_agent_env import MultiAgentEnv

    class Countdown(MultiAgentEnv):
        """Three steps an episode; the team reward is the action of agent "a"."""

        def __init__(self, config):
            super().__init__()
            self.possible_agents = self.agents = ["a", "b"]
            self.observation_spaces = {i: gym.spaces.Box(0, 1, (1,)) for i in self.agents}
            self.action_spaces = {i: gym.spaces.Discrete(2) for i in self.agents}
            self.t = 0

        def reset(self, *, seed=None, options=None):
            self.t = 0
            return {i: [0.0] for i in self.agents}, {}

        def step(self, actions):
            self.t += 1
            reward = float(actions["a"])
            done = {"__all__": self.t == 3}
            obs = {i: [0.0] for i in self.agents}
            return obs, {i: reward for i in self.agents}, done, {"__all__": False}, {}

    class Task:
        env_config = ()  # dict(()) == {}

        @staticmethod
        def env_class():
            return Countdown

    value = expectations.random_policy_return(Task, env_steps=3000)
    assert value == pytest.approx(1.5, abs=0.1)  # 1,000 episodes of 3 fair coin flips
    assert expectations.random_policy_return(Task, env_steps=0, min_episodes=1) in (0, 1, 2, 3)


def test_each_task_is_read_from_the_one_campaign_folder_that_holds_it(tmp_path):
    tasks = {"halfcheetah_2x3": None, "simple_spread": None}
    mamujoco, mpe = tmp_path / "compare", tmp_path / "compare_mpe"
    (mamujoco / "halfcheetah_2x3").mkdir(parents=True)
    (mamujoco / "not_a_task").mkdir()
    (mpe / "simple_spread").mkdir(parents=True)
    assert expectations.task_folders([mamujoco, mpe], tasks) == {
        "halfcheetah_2x3": mamujoco,
        "simple_spread": mpe,
    }
    (mpe / "halfcheetah_2x3").mkdir()
    with pytest.raises(SystemExit, match="'halfcheetah_2x3' is in both"):
        expectations.task_folders([mamujoco, mpe], tasks)
    with pytest.raises(SystemExit, match=r"--data .*missing: no such folder"):
        expectations.task_folders([tmp_path / "missing"], tasks)
