"""A small PettingZoo env whose agent "a_1" leaves at step 2 of 5, for the black-death tests."""

from __future__ import annotations

from typing import ClassVar

import gymnasium as gym
import numpy as np
from pettingzoo import ParallelEnv

from rllib_hatrpo.envs import PettingZooEnv

AGENTS = ["a_0", "a_1", "a_2"]
LENGTH = 5
LEAVES_AT = 2


class LeavingParallelEnv(ParallelEnv):
    """Three agents, Discrete(2) actions, reward = own action; "a_1" leaves at step 2 of 5.

    Observation of agent k at step t: [t / 5, k / 3 + noise]. The env asserts that it receives
    actions exactly for its current `agents` (PettingZoo's parallel API).

    Args:
        end: How the episode ends at step 5: "truncated", "terminated", or "mixed" ("a_0"
            terminates, "a_2" is truncated).
        leave: How "a_1" finishes at step 2: "terminated" or "truncated".
    """

    metadata: ClassVar[dict] = {"name": "leaving_v0"}

    def __init__(self, end: str = "truncated", leave: str = "terminated"):
        self.possible_agents = list(AGENTS)
        self.end, self.leave = end, leave
        self.t = 0
        self._rng = np.random.default_rng(0)

    def observation_space(self, agent):
        return gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def _obs(self, aid):
        k = AGENTS.index(aid)
        return np.array([self.t / LENGTH, k / 3 + 0.1 * self._rng.normal()], np.float32)

    def reset(self, seed=None, options=None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        self.t = 0
        self.agents = list(self.possible_agents)
        return {aid: self._obs(aid) for aid in self.agents}, {aid: {} for aid in self.agents}

    def step(self, actions):
        assert sorted(actions) == sorted(self.agents), (sorted(actions), self.agents)
        self.t += 1
        obs = {aid: self._obs(aid) for aid in self.agents}
        rewards = {aid: float(actions[aid]) for aid in self.agents}
        term = {aid: False for aid in self.agents}
        trunc = {aid: False for aid in self.agents}
        if self.t == LEAVES_AT:
            (term if self.leave == "terminated" else trunc)["a_1"] = True
            self.agents.remove("a_1")
        if self.t == LENGTH:
            for aid in self.agents:
                ends_by = "terminated" if self.end == "mixed" and aid == "a_0" else self.end
                (term if ends_by == "terminated" else trunc)[aid] = True
            self.agents = []
        return obs, rewards, term, trunc, {aid: {} for aid in obs}


class LeavingTeamEnv(PettingZooEnv):
    """`LeavingParallelEnv` with `dead_agents="black_death"` and the summed team reward."""

    def __init__(self, config: dict | None = None):
        super().__init__(
            LeavingParallelEnv(**(config or {})), team_reward="sum", dead_agents="black_death"
        )
