"""Episode ends and env data as the learner connector sees them, on real sampled episodes.

A time limit (truncation) bootstraps with V of the final global state; a terminal state does
not; non-finite env data stops with an error that names the field, the agent and the step.
The critic is made exact for a constant state: V ≡ 300 = r / (1 − γ) with r = 3, γ = 0.99, so
every TD error of a non-terminal step is 3 + 0.99 · 300 − 300 = 0.
"""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
import torch
from pettingzoo import ParallelEnv
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

from rllib_hatrpo.connectors.central_critic_gae import NonFiniteEnvDataError
from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID
from rllib_hatrpo.envs import MaMuJoCoEnv, PettingZooEnv
from tests.helpers import connector_batch, make_config, runner_and_learner

pytestmark = pytest.mark.component

REWARD, GAMMA, TRUE_VALUE = 3.0, 0.99, 300.0
HORIZON = 10


class _ConstantTeamGame(ParallelEnv):
    """Two agents, constant observation and state, reward 3 per step, ends at step HORIZON.

    ``end``: "truncate" (a time limit) or "terminate" (a terminal state). ``bad``: an
    optional (field, step, value) that replaces agent_1's reward or observation at that step.
    """

    metadata: ClassVar[dict] = {"name": "constant_team_game_v0"}

    def __init__(self, end: str = "truncate", bad: tuple | None = None):
        self.possible_agents = ["agent_0", "agent_1"]
        self.end, self.bad, self.t = end, bad, 0

    def observation_space(self, agent):
        return gym.spaces.Box(-np.inf, np.inf, (1,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Box(-1.0, 1.0, (1,), np.float32)

    def state(self):
        return np.array([0.5], dtype=np.float32)

    def _obs(self):
        obs = {aid: np.array([0.5], dtype=np.float32) for aid in self.possible_agents}
        if self.bad and self.bad[0] == "observation" and self.t == self.bad[1]:
            obs["agent_1"] = np.array([self.bad[2]], dtype=np.float32)
        return obs

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._obs(), {aid: {} for aid in self.agents}

    def step(self, actions):
        self.t += 1
        done = self.t >= HORIZON
        rewards = {aid: REWARD for aid in self.agents}
        if self.bad and self.bad[0] == "reward" and self.t == self.bad[1]:
            rewards["agent_1"] = self.bad[2]
        term = {aid: done and self.end == "terminate" for aid in self.agents}
        trunc = {aid: done and self.end == "truncate" for aid in self.agents}
        return self._obs(), rewards, term, trunc, {aid: {} for aid in self.agents}


class ConstantTeamGameEnv(PettingZooEnv):
    """The game above behind the package's wrapper; ``env_config`` keys ``end`` and ``bad``."""

    def __init__(self, config=None):
        config = dict(config or {})
        super().__init__(_ConstantTeamGame(config.get("end", "truncate"), config.get("bad")))


def _with_exact_critic(env_cls, env_config, num_timesteps):
    """Samples with 2 envs and returns (learner, episodes); the critic outputs V ≡ 300."""
    config = make_config(env_cls, env_config, batch=num_timesteps, gamma=GAMMA)
    runner, learner = runner_and_learner(config)
    head = learner.module[SHARED_CRITIC_ID].vf[-1]
    with torch.no_grad():
        head.weight.zero_()
        head.bias.fill_(TRUE_VALUE)
    return learner, runner.sample(num_timesteps=num_timesteps, random_actions=True)


def _critic_rows(learner, episodes):
    critic = connector_batch(learner, episodes)[SHARED_CRITIC_ID]
    return critic[Postprocessing.VALUE_TARGETS], critic[Columns.LOSS_MASK]


def test_time_limit_bootstraps_with_the_final_state_value():
    """Before the fix the cut rows had advantage 3 − 300 = −297 and value target 3."""
    learner, episodes = _with_exact_critic(ConstantTeamGameEnv, {"end": "truncate"}, 26)
    # 2 envs × 13 steps: each env finished one 10-step episode and left a 3-step chunk, cut
    # at the iteration boundary (which bootstrapped already before the fix: keep it covered).
    assert sorted(len(e) for e in episodes) == [3, 3, HORIZON, HORIZON]
    finished = [e for e in episodes if e.is_done]
    assert len(finished) == 2
    # RLlib marks the all-truncated episode as terminated as well: the reason for the fix.
    assert all(e.is_terminated and e.is_truncated for e in finished)
    batch = connector_batch(learner, episodes)
    mask = batch[SHARED_CRITIC_ID][Columns.LOSS_MASK]
    targets = batch[SHARED_CRITIC_ID][Postprocessing.VALUE_TARGETS][mask]
    np.testing.assert_allclose(targets.numpy(), TRUE_VALUE, rtol=1e-6)
    for mid in ("agent_0", "agent_1"):
        adv = batch[mid][Postprocessing.ADVANTAGES][mask]
        assert float(adv.abs().max()) < 1e-4, mid


def test_terminal_state_does_not_bootstrap():
    learner, episodes = _with_exact_critic(ConstantTeamGameEnv, {"end": "terminate"}, 26)
    targets, mask = _critic_rows(learner, episodes)
    rows = iter(range(len(mask)))
    for episode in episodes:
        chunk = [next(rows) for _ in range(len(episode) + 1)]  # L steps + 1 bootstrap row
        last = chunk[-2]
        expected = REWARD if episode.is_done else REWARD + GAMMA * TRUE_VALUE
        assert float(targets[last]) == pytest.approx(expected, rel=1e-6)


def test_mamujoco_time_limit_reaches_the_learner_as_truncation():
    """A real HalfCheetah episode cut by its time limit bootstraps at the cut."""
    env_config = {"scenario": "HalfCheetah", "agent_conf": "2x3", "max_episode_steps": 12}
    learner, episodes = _with_exact_critic(MaMuJoCoEnv, env_config, 24)
    finished = [e for e in episodes if e.is_done]
    assert finished and all(len(e) == 12 for e in finished)
    targets, mask = _critic_rows(learner, episodes)
    rows = iter(range(len(mask)))
    for episode in episodes:
        chunk = [next(rows) for _ in range(len(episode) + 1)]
        last_reward = float(episode.agent_episodes["agent_0"].get_rewards(-1))
        assert float(targets[chunk[-2]]) == pytest.approx(last_reward + GAMMA * TRUE_VALUE)


@pytest.mark.parametrize(
    ("field", "value", "step"),
    [("reward", float("inf"), 4), ("reward", float("nan"), 4), ("observation", np.nan, 5)],
)
def test_non_finite_env_data_is_an_error_naming_field_agent_and_step(field, value, step):
    """Before: inf made the value norm NaN for good; NaN blamed the team-reward wrapper."""
    env_config = {"end": "truncate", "bad": (field, step, value)}
    learner, episodes = _with_exact_critic(ConstantTeamGameEnv, env_config, 12)
    with pytest.raises(NonFiniteEnvDataError) as info:
        connector_batch(learner, episodes)
    message = str(info.value)
    assert f"Non-finite {field}" in message
    assert "agent 'agent_1'" in message
    assert f"env step {step}" in message
