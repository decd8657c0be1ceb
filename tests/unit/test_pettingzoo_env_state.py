"""Unit tests for `PettingZooEnv` with envs whose `state()` fails once the episode is over.

PettingZoo's multiwalker, for one, frees its bodies when it terminates, so its `state()`
raises `AttributeError` after the last step. No `ray.init`.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo import ParallelEnv

from rllib_hatrpo.envs import ENV_TERMINATED_KEY, GLOBAL_STATE_KEY, PettingZooEnv


class _StateFailsWhenDoneEnv(ParallelEnv):
    """Two agents, a 3-entry `state()` that raises `AttributeError` once the episode ended.

    Args:
        end: How the episode ends at step `length`: "terminated" or "truncated".
        length: Steps per episode.
        fail_at: The step after which `state()` raises (default: the last step).
    """

    metadata: ClassVar[dict] = {"name": "state_fails_v0"}

    def __init__(self, end: str = "terminated", length: int = 3, fail_at: int | None = None):
        self.possible_agents = ["walker_0", "walker_1"]
        self.state_space = gym.spaces.Box(1.0, 10.0, shape=(3,), dtype=np.float64)
        self.end, self.length = end, length
        self.fail_at = length if fail_at is None else fail_at
        self.t = 0

    def observation_space(self, agent):
        return gym.spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def state(self):
        if self.t >= self.fail_at:
            raise AttributeError("'NoneType' object has no attribute 'position'")
        return np.full(3, 1.0 + self.t)

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        return {aid: np.zeros(2, np.float32) for aid in self.agents}, {}

    def step(self, actions):
        self.t += 1
        done = self.t >= self.length
        obs = {aid: np.full(2, 0.1 * self.t, np.float32) for aid in self.agents}
        term = {aid: done and self.end == "terminated" for aid in self.agents}
        trunc = {aid: done and self.end == "truncated" for aid in self.agents}
        if done:
            self.agents = []
        return obs, {aid: 1.0 for aid in obs}, term, trunc, {}


_ACTIONS = {"walker_0": 0, "walker_1": 1}


def test_state_failing_after_termination_gives_placeholder_state():
    env = PettingZooEnv(_StateFailsWhenDoneEnv("terminated"))
    assert env.global_state == "state"
    for _ in range(2):  # Past the first episode end, into the next episode.
        _, infos = env.reset()
        np.testing.assert_array_equal(infos["walker_0"][GLOBAL_STATE_KEY], np.ones(3))
        for t in range(1, 4):
            _, _, terminateds, truncateds, infos = env.step(_ACTIONS)
            assert terminateds["__all__"] is (t == 3)
            assert truncateds["__all__"] is False
        for aid in env.possible_agents:
            state = infos[aid][GLOBAL_STATE_KEY]
            assert state.dtype == np.float32
            np.testing.assert_array_equal(state, np.zeros(3, np.float32))
            assert infos[aid][ENV_TERMINATED_KEY] is True


@pytest.mark.parametrize(
    ("end", "fail_at", "step"),
    [("truncated", None, 3), ("terminated", 2, 2)],
    ids=["at_truncation", "mid_episode"],
)
def test_state_failing_where_it_is_needed_names_env_step_and_fix(end, fail_at, step):
    env = PettingZooEnv(_StateFailsWhenDoneEnv(end, fail_at=fail_at))
    env.reset()
    for _ in range(step - 1):
        env.step(_ACTIONS)
    with pytest.raises(RuntimeError) as info:
        env.step(_ACTIONS)
    message = str(info.value)
    assert "_StateFailsWhenDoneEnv.state() raised AttributeError" in message
    assert f"at step {step} of the episode" in message
    assert "global_state='concat_obs'" in message
    assert isinstance(info.value.__cause__, AttributeError)


def test_multiwalker_runs_past_its_first_episode_end():
    pytest.importorskip("Box2D")
    from pettingzoo.sisl import multiwalker_v9

    env = PettingZooEnv(multiwalker_v9.parallel_env(max_cycles=200))
    assert env.global_state == "state"
    rng = np.random.default_rng(0)
    for episode in range(2):
        env.reset(seed=episode)
        terminated = truncated = False
        while not (terminated or truncated):
            actions = {aid: rng.uniform(-1, 1, 4).astype(np.float32) for aid in env.agents}
            _, _, terminateds, truncateds, infos = env.step(actions)
            terminated, truncated = terminateds["__all__"], truncateds["__all__"]
        assert infos["walker_0"][GLOBAL_STATE_KEY].shape == env.state_space.shape


# --------------------------------------------------------------------------- agents leaving


class _LeavingEnv(_StateFailsWhenDoneEnv):
    """ "walker_1" terminates at step 2 and leaves; "walker_0" goes on to a truncation at 3."""

    def __init__(self):
        super().__init__("truncated", length=3, fail_at=10)

    def step(self, actions):
        obs, rewards, term, trunc, infos = super().step(actions)
        if self.t == 2:
            term["walker_1"] = True
            self.agents.remove("walker_1")
        elif self.t > 2:
            for out in (obs, rewards, term, trunc):
                out.pop("walker_1", None)
        return obs, rewards, term, trunc, infos


def test_agent_leaving_error_points_at_black_death():
    env = PettingZooEnv(_LeavingEnv())
    env.reset()
    env.step(_ACTIONS)
    with pytest.raises(RuntimeError, match="leaving mid-episode are not supported") as info:
        env.step(_ACTIONS)
    assert "PettingZooEnv(env, dead_agents='black_death')" in str(info.value)


def test_black_death_runs_an_env_whose_agents_leave():
    """SuperSuit's black_death_v3 also runs through episode ends (its caveats: see README)."""
    supersuit = pytest.importorskip("supersuit")
    env = PettingZooEnv(supersuit.black_death_v3(_LeavingEnv()))
    for _ in range(2):
        env.reset()
        for t in range(1, 6):
            obs, _, terminateds, truncateds, _ = env.step(_ACTIONS)
            if t >= 3:  # "walker_1" left at step 2: zeros from then on.
                np.testing.assert_array_equal(obs["walker_1"], np.zeros(2, np.float32))
            if terminateds["__all__"] or truncateds["__all__"]:
                break
        assert terminateds["__all__"] or truncateds["__all__"]
        assert t <= 4  # supersuit 3.11 reports the end one step after the env's last step.
