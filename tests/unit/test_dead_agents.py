"""`PettingZooEnv(env, dead_agents="black_death")`: agents that leave mid-episode. No `ray.init`.

"a_1" of `tests.leaving_env.LeavingParallelEnv` terminates (or is truncated) at step 2 of 5.
"""

from __future__ import annotations

import numpy as np
import pytest

from rllib_hatrpo.envs import (
    AGENT_ACTIVE_KEY,
    ENV_TERMINATED_KEY,
    GLOBAL_STATE_KEY,
    PettingZooEnv,
)
from rllib_hatrpo.envs.pettingzoo_env import AGENT_REWARD_KEY as AGENT_REWARD
from tests.leaving_env import AGENTS, LENGTH, LeavingParallelEnv

_ALL_ONES = dict.fromkeys(AGENTS, 1)


def _wrapped(**kwargs) -> PettingZooEnv:
    return PettingZooEnv(LeavingParallelEnv(**kwargs), team_reward="sum", dead_agents="black_death")


@pytest.mark.parametrize("leave", ["terminated", "truncated"])
def test_agent_that_left_gets_zeros_team_reward_and_inactive_flag(leave):
    env = _wrapped(leave=leave)
    for episode in range(2):  # Past the first episode end, into the next one.
        obs, infos = env.reset(seed=episode)
        assert all(infos[aid][AGENT_ACTIVE_KEY] is True for aid in AGENTS)
        for t in range(1, LENGTH + 1):
            obs, rewards, terminateds, truncateds, infos = env.step(_ALL_ONES)
            assert sorted(obs) == sorted(rewards) == sorted(infos) == AGENTS
            # The team reward is the sum over the agents present in the env's rewards.
            assert rewards == dict.fromkeys(AGENTS, 3.0 if t <= 2 else 2.0), t
            if t < 2:
                assert all(infos[aid][AGENT_ACTIVE_KEY] for aid in AGENTS)
            if t >= 2:  # "a_1" finished at step 2: inactive from that observation on.
                assert infos["a_1"][AGENT_ACTIVE_KEY] is False
                assert infos["a_1"][AGENT_REWARD] == (1.0 if t == 2 else 0.0)
            if t == 2:  # Its final observation is the env's own.
                assert obs["a_1"][0] == pytest.approx(2 / LENGTH)
            if t >= 3:
                np.testing.assert_array_equal(obs["a_1"], np.zeros(2, np.float32))
            if t < LENGTH:
                assert infos["a_0"][AGENT_ACTIVE_KEY] and infos["a_2"][AGENT_ACTIVE_KEY]
                assert not any(terminateds.values()) and not any(truncateds.values()), t
                assert all(info[ENV_TERMINATED_KEY] is False for info in infos.values())
            state = infos["a_0"][GLOBAL_STATE_KEY]
            np.testing.assert_array_equal(state, np.concatenate([obs[a] for a in AGENTS]))
        # The episode ends at the env's last step, by its time limit: truncated.
        assert truncateds == {**dict.fromkeys(AGENTS, True), "__all__": True}
        assert terminateds == {**dict.fromkeys(AGENTS, False), "__all__": False}
        assert all(info[AGENT_ACTIVE_KEY] is False for info in infos.values())
        assert all(info[ENV_TERMINATED_KEY] is False for info in infos.values())


@pytest.mark.parametrize(
    ("end", "terminated"), [("terminated", True), ("mixed", True), ("truncated", False)]
)
def test_episode_end_is_terminated_if_any_last_agent_terminated(end, terminated):
    """ "a_1" terminated long before; only the agents finishing at the last step count."""
    env = _wrapped(end=end)
    env.reset()
    for _ in range(LENGTH):
        _, _, terminateds, truncateds, infos = env.step(_ALL_ONES)
    assert terminateds["__all__"] is terminated and truncateds["__all__"] is (not terminated)
    assert all(terminateds[aid] is terminated for aid in AGENTS)
    assert all(info[ENV_TERMINATED_KEY] is terminated for info in infos.values())


def test_actions_of_agents_that_left_are_not_passed_on():
    """The env asserts it gets actions exactly for its `agents`; one missing is an error."""
    env = _wrapped()
    env.reset()
    env.step(_ALL_ONES)
    env.step(_ALL_ONES)
    env.step({"a_0": 0, "a_2": 1})  # No action for "a_1", which left: fine.
    with pytest.raises(ValueError, match=r"No action for agent\(s\) \['a_2'\]"):
        env.step({"a_0": 0, "a_1": 1})


def test_default_still_raises_and_names_the_option():
    env = PettingZooEnv(LeavingParallelEnv())
    assert env.dead_agents == "error"
    env.reset()
    env.step(_ALL_ONES)
    with pytest.raises(RuntimeError, match="leaving mid-episode are not supported") as info:
        env.step(_ALL_ONES)
    assert "dead_agents='black_death'" in str(info.value)
    assert "supersuit" not in str(info.value)
    with pytest.raises(ValueError, match="dead_agents must be one of"):
        PettingZooEnv(LeavingParallelEnv(), dead_agents="zeros")
