"""The training loop of ``hatrpo train`` and the Tune trials, on a fake algorithm."""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import pytest

from rllib_hatrpo.experiments.loop import DEFAULT_STOP_ITERS, StopCriteria, train_iterations


class _FakeAlgo:
    """``train()`` samples 100 env steps per iteration and records the timer resets."""

    def __init__(self, team_returns=None):
        self.config = SimpleNamespace(policies={"agent_1": None, "agent_0": None})
        self.iteration = 0
        self.deleted: list[tuple[str, ...]] = []
        self.metrics = SimpleNamespace(delete=lambda *key, key_error: self.deleted.append(key))
        self.team_returns = iter(team_returns or itertools.repeat(math.nan))

    def train(self):
        self.iteration += 1
        return {
            "training_iteration": self.iteration,
            "time_total_s": 2.0 * self.iteration,
            "time_this_iter_s": 2.0,
            "env_runners": {
                "num_env_steps_sampled_lifetime": 100 * self.iteration,
                "team_episode_return_mean": next(self.team_returns),
            },
        }


def _steps(algo, stop, **kwargs):
    return list(train_iterations(algo, stop, **kwargs))


def test_stops_at_the_first_criterion_met_and_says_why():
    algo = _FakeAlgo()
    steps = _steps(algo, StopCriteria(iters=5, timesteps=300))
    assert [s.row["env_steps"] for s in steps] == [100, 200, 300]
    assert [s.stop_reason for s in steps] == [None, None, "300 env steps"]
    assert algo.iteration == 3


def test_checkpoints_fall_due_every_n_iterations():
    steps = _steps(_FakeAlgo(), StopCriteria(iters=5), checkpoint_every=2)
    assert [s.checkpoint_due for s in steps] == [False, True, False, True, False]
    assert not any(s.checkpoint_due for s in _steps(_FakeAlgo(), StopCriteria(iters=3)))


def test_timers_are_reset_before_every_iteration():
    algo = _FakeAlgo()
    _steps(algo, StopCriteria(iters=2))
    timers = {key[-1] for key in algo.deleted}
    assert timers == {"env_runner_sampling_timer", "learner_update_timer"}
    assert len(algo.deleted) == 4


def test_restored_rows_count_towards_time_total_and_the_time_budget():
    clock = itertools.count(0.0, 1.0).__next__  # 1 s per call
    restored = [{"training_iteration": 1, "env_steps": 100, "time_total_s": 30.0}]
    steps = _steps(_FakeAlgo(), StopCriteria(time_budget_s=32.0), restored=restored, clock=clock)
    assert [s.row["time_total_s"] for s in steps] == [32.0, 34.0]  # RLlib's 2 s, 4 s + 30 s
    assert steps[-1].stop_reason == "time budget 32 s"


def test_team_return_criterion_ignores_iterations_without_episodes():
    steps = _steps(_FakeAlgo([math.nan, -5.0, 1.0]), StopCriteria(team_return=0.0, iters=9))
    assert [s.stop_reason for s in steps] == [None, None, "team return >= 0.0"]


def test_no_criterion_is_refused_and_the_default_is_twenty_iterations():
    with pytest.raises(ValueError, match="stop criterion"):
        next(train_iterations(_FakeAlgo(), StopCriteria()))
    assert StopCriteria().or_default() == StopCriteria(iters=DEFAULT_STOP_ITERS)
    assert StopCriteria(timesteps=5).or_default() == StopCriteria(timesteps=5)


def test_finished_reason_of_restored_rows():
    rows = [{"training_iteration": 4, "env_steps": 400, "time_total_s": 9.0, "team_return": 1.0}]
    assert StopCriteria(iters=4).finished(rows) == "4 iterations"
    assert StopCriteria(iters=5).finished(rows) is None
    assert StopCriteria(iters=1).finished([]) is None
