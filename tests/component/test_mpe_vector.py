"""`MPESpreadVectorEnv` returns bit for bit what N `MPEEnv`s return through `SyncTeamVectorEnv`.

Both sides get the same random actions (seeded) and the same resets: the first seeded, those
after a time limit alternately seeded and unseeded (an unseeded reset continues the env's own
generator), and one env reset early, mid-episode, so that the envs' episodes are staggered.
Every step compares the observations, rewards, flags and each agent's info dict (keys in
order, value types, and the values' dtype, shape and bytes, global state included). Short
episodes (`max_cycles` 8) put several whole episodes and their resets into every run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rllib_hatrpo.envs import ENV_TERMINATED_KEY, GLOBAL_STATE_KEY
from rllib_hatrpo.envs.mpe import MPEEnv
from rllib_hatrpo.envs.mpe_vector import MPESpreadVectorEnv, unsupported_reason
from rllib_hatrpo.envs.pettingzoo_env import AGENT_REWARD_KEY
from rllib_hatrpo.envs.vector import SyncTeamVectorEnv, team_vector_env_of
from tests.helpers import (
    assert_bitwise,
    assert_bitwise_infos,
    assert_bitwise_obs,
    team_runner_columns,
)

pytest.importorskip("mpe2")
pytestmark = pytest.mark.component

SHORT_EPISODE, SHORT_RUN = 8, 30  # Three time limits per env, and one early reset.
EARLY_RESET_STEP = 3


def _actions(rng: np.random.Generator, venv: Any, num_envs: int, kind: str) -> dict:
    if kind == "discrete":
        return {aid: rng.integers(0, 5, num_envs) for aid in venv.possible_agents}
    if kind == "continuous":
        return {
            aid: rng.uniform(0.0, 1.0, (num_envs, 5)).astype(np.float32)
            for aid in venv.possible_agents
        }
    # Out of bounds and float64: clipped by PettingZoo's wrapper, as by the fast path.
    return {aid: rng.uniform(-0.5, 1.5, (num_envs, 5)) for aid in venv.possible_agents}


def _run_both(config: dict[str, Any], num_envs: int, kind: str = "discrete", seed: int = 0):
    """Steps both paths in lockstep, comparing everything; returns the resets counted."""
    reference = SyncTeamVectorEnv([MPEEnv(config) for _ in range(num_envs)])
    fast = MPESpreadVectorEnv(config, num_envs)
    assert fast.possible_agents == reference.possible_agents
    assert fast.state_space == reference.envs[0].state_space
    assert fast.observation_spaces == reference.envs[0].observation_spaces
    rng = np.random.default_rng(seed)
    indices, seeds = list(range(num_envs)), [seed + i for i in range(num_envs)]
    counts = {"truncated": 0, "seeded_resets": 0, "unseeded_resets": 0}
    for step in range(SHORT_RUN + 1):
        if indices:
            expected, expected_infos = reference.reset(indices, seeds)
            actual, actual_infos = fast.reset(indices, seeds)
            what = f"reset before step {step} of envs {indices} with seeds {seeds}"
            assert_bitwise_obs(actual, expected, what)
            assert_bitwise_infos(actual_infos, expected_infos, what)
            assert GLOBAL_STATE_KEY in expected_infos[0][fast.possible_agents[0]]
        if step == SHORT_RUN:
            break
        actions = _actions(rng, fast, num_envs, kind)
        expected_step, actual_step = reference.step(actions), fast.step(actions)
        what = f"step {step}"
        assert_bitwise_obs(actual_step.obs, expected_step.obs, what)
        for aid, rewards in expected_step.rewards.items():  # The reference's are views.
            assert_bitwise(actual_step.rewards[aid], rewards.copy(), f"{what} {aid} reward")
        assert_bitwise(actual_step.terminated, expected_step.terminated, f"{what} terminated")
        assert_bitwise(actual_step.truncated, expected_step.truncated, f"{what} truncated")
        assert_bitwise_infos(actual_step.infos, expected_step.infos, what)
        assert {AGENT_REWARD_KEY, ENV_TERMINATED_KEY} <= set(expected_step.infos[0]["agent_0"])
        counts["truncated"] += int(expected_step.truncated.sum())
        indices = [int(i) for i in np.flatnonzero(expected_step.truncated)]
        seeds = [None if (step + i) % 2 else 1000 + step + i for i in indices]
        if step == EARLY_RESET_STEP and 0 not in indices:  # Staggers env 0's episodes.
            indices, seeds = [0, *indices], [77, *seeds]
        counts["seeded_resets"] += sum(s is not None for s in seeds)
        counts["unseeded_resets"] += sum(s is None for s in seeds)
    reference.close()
    fast.close()
    return counts


@pytest.mark.parametrize("num_envs", [1, 3])
@pytest.mark.parametrize("kind", ["discrete", "continuous", "continuous_out_of_bounds"])
def test_matches_reference_over_episodes(kind: str, num_envs: int):
    """Whole episodes, their truncations, staggered seeded and unseeded resets."""
    config = {"max_cycles": SHORT_EPISODE, "continuous_actions": kind != "discrete"}
    counts = _run_both(config, num_envs, kind)
    assert counts["truncated"] >= 3 * num_envs, counts
    assert counts["seeded_resets"] > 0 and counts["unseeded_resets"] > 0, counts


@pytest.mark.parametrize(
    "extra",
    [
        {"team_reward": "mean"},
        {"env_kwargs": {"N": 4}},
        {"env_kwargs": {"N": 2, "local_ratio": 0.3}, "global_state": "concat_obs"},
        {"env_kwargs": {"curriculum": False, "dynamic_rescaling": False}},
    ],
    ids=["mean", "N4", "N2_local_ratio_concat_obs", "default_kwargs"],
)
@pytest.mark.parametrize("num_envs", [1, 3])
def test_matches_reference_with_options(extra: dict[str, Any], num_envs: int):
    config = {"max_cycles": SHORT_EPISODE, **extra}
    counts = _run_both(config, num_envs)
    assert counts["truncated"] >= 3 * num_envs, counts


def test_matches_reference_over_default_episodes():
    """mpe2's own 25-step episodes, four of them per env, 16 envs."""
    reference = SyncTeamVectorEnv([MPEEnv({}) for _ in range(16)])
    fast = MPESpreadVectorEnv({}, 16)
    rng = np.random.default_rng(5)
    seeds = list(range(16))
    for episode in range(4):
        assert_bitwise_obs(
            fast.reset(range(16), seeds)[0], reference.reset(range(16), seeds)[0], "reset"
        )
        seeds = [None] * 16 if episode % 2 == 0 else [100 * episode + i for i in range(16)]
        for step in range(25):
            actions = _actions(rng, fast, 16, "discrete")
            mine, theirs = fast.step(actions), reference.step(actions)
            assert_bitwise_obs(mine.obs, theirs.obs, f"episode {episode} step {step}")
            assert_bitwise_infos(mine.infos, theirs.infos, f"episode {episode} step {step}")
            assert mine.truncated.tolist() == theirs.truncated.tolist() == [step == 24] * 16


def test_team_env_runner_samples_the_same_episodes():
    """Through HATRPO's vectorised runner, with the policy's own (seeded) exploration: the
    fast path and the reference give the same episodes, so the same actions were drawn."""
    pytest.importorskip("rllib_hatrpo.team_env_runner")
    env_config = {"max_cycles": 10}
    fast_kind, fast = team_runner_columns(MPEEnv, {**env_config, "fast_vector": True})
    reference_kind, reference = team_runner_columns(MPEEnv, {**env_config, "fast_vector": False})
    assert (fast_kind, reference_kind) == ("MPESpreadVectorEnv", "SyncTeamVectorEnv")
    assert len(fast) == len(reference) > 3 * 3 * 4  # Truncated episodes and new ones.
    names = ("obs", "actions", "rewards", "global_state")
    for mine, theirs in zip(fast, reference, strict=True):
        assert mine[0] == theirs[0]
        for name, a, b in zip(names, mine[1:], theirs[1:], strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape, f"{mine[0]} {name}"
            np.testing.assert_array_equal(a, b, err_msg=f"{mine[0]} {name}")
            assert a.tobytes() == b.tobytes(), f"{mine[0]} {name}"


def test_hook_offers_the_fast_path_unless_switched_off():
    config = {"max_cycles": 10}
    envs = [MPEEnv(config) for _ in range(2)]
    fast = team_vector_env_of(envs)
    assert isinstance(fast, MPESpreadVectorEnv) and fast.num_envs == 2
    assert fast.config == envs[0].config
    fast.close()
    reference = team_vector_env_of([MPEEnv({**config, "fast_vector": False})])
    assert isinstance(reference, SyncTeamVectorEnv)
    adversary = MPEEnv({"scenario": "simple_adversary"})
    assert adversary.make_team_vector_env(2) is None
    assert isinstance(team_vector_env_of([adversary]), SyncTeamVectorEnv)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"render_mode": "rgb_array"}, "render_mode"),
        ({"scenario": "simple_adversary"}, "simple_adversary"),
        ({"env_kwargs": {"curriculum": True}}, "curriculum"),
        ({"env_kwargs": {"terminate_on_success": True}}, "terminate_on_success"),
        ({"env_kwargs": {"num_agent_neighbors": 1}}, "num_agent_neighbors"),
        ({"env_kwargs": {"benchmark_data": True}}, "benchmark_data"),
    ],
)
def test_unsupported_configs_fall_back(config: dict[str, Any], named: str):
    """The hook's None cases; building one directly is a ValueError naming the setting."""
    reason = unsupported_reason(config)
    assert reason is not None and named in reason
    assert MPEEnv(config).make_team_vector_env(2) is None
    with pytest.raises(ValueError, match="fast_vector=False"):
        MPESpreadVectorEnv(config, 2)


def test_supported_configs_have_no_reason():
    for config in [{}, {"scenario": "simple_spread"}, {"env_kwargs": {"N": 5}}]:
        assert unsupported_reason(config) is None, config


def test_returned_arrays_are_not_shared():
    """Like the reference's copies: writing one agent's state or observation changes no other."""
    venv = MPESpreadVectorEnv({"max_cycles": 5}, 2)
    obs, infos = venv.reset([0, 1], [0, 1])
    out = venv.step({aid: np.ones(2, dtype=np.int64) for aid in venv.possible_agents})
    arrays = [*obs.values(), *out.obs.values(), *out.rewards.values()]
    arrays += [info[GLOBAL_STATE_KEY] for env in [*infos, *out.infos] for info in env.values()]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1 :]:
            assert not np.shares_memory(a, b)
    venv.close()


def test_bad_arguments_are_named():
    venv = MPESpreadVectorEnv({"max_cycles": 2}, 2)
    good = {aid: np.zeros(2, dtype=np.int64) for aid in venv.possible_agents}
    with pytest.raises(RuntimeError, match=r"env\(s\) \[0, 1\] must be reset"):
        venv.step(good)
    venv.reset([0, 1], [0, 1])
    with pytest.raises(ValueError, match="No action for agent 'agent_1'"):
        venv.step({"agent_0": good["agent_0"]})
    with pytest.raises(ValueError, match=r"actions\['agent_0'\] has shape \(3,\)"):
        venv.step({**good, "agent_0": np.zeros(3, dtype=np.int64)})
    with pytest.raises(ValueError, match=r"integers in \[0, 5\)"):
        venv.step({**good, "agent_2": np.array([0, 5])})
    with pytest.raises(ValueError, match="one seed"):
        venv.reset([0, 1], [0])
    venv.step(good)
    venv.reset([1], [3])
    assert venv.step(good).truncated.tolist() == [True, False]
    with pytest.raises(RuntimeError, match=r"env\(s\) \[0\] must be reset"):
        venv.step(good)
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        MPESpreadVectorEnv({}, 0)
    with pytest.raises(ValueError, match="unknown config key"):
        MPESpreadVectorEnv({"max_cycle": 2}, 1)
    venv.close()
