"""`MaMuJoCoVectorEnv` returns bit for bit what N `MaMuJoCoEnv`s return through `SyncTeamVectorEnv`.

Both sides get the same random actions (fixed seed) and the same resets: the first seeded, the
later ones (after a time limit or a terminal state) alternately seeded and unseeded, so that
both seeding and the continuation of each env's random generator are compared. Every step
compares the observations, rewards, flags and each agent's info dict (keys in order, value
types, and the values' bytes, global state included). Short time limits (30 steps) put
truncations and their resets into every run; Walker2d and Ant also fall over (terminations,
counted and asserted).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from rllib_hatrpo.envs import ENV_TERMINATED_KEY, GLOBAL_STATE_KEY
from rllib_hatrpo.envs.mamujoco import MaMuJoCoEnv
from rllib_hatrpo.envs.mamujoco_vector import MaMuJoCoVectorEnv, unsupported_reason
from rllib_hatrpo.envs.pettingzoo_env import AGENT_REWARD_KEY
from rllib_hatrpo.envs.vector import SyncTeamVectorEnv, team_vector_env_of
from tests.helpers import (
    assert_bitwise,
    assert_bitwise_infos,
    assert_bitwise_obs,
    team_runner_columns,
)

pytest.importorskip("gymnasium_robotics")
pytestmark = pytest.mark.component

NUM_ENVS = 3
SHORT_EPISODE, SHORT_RUN = 30, 75  # Two time limits per env, unless it falls over first.
TUNED = [("HalfCheetah", "2x3"), ("HalfCheetah", "6x1"), ("Walker2d", "2x3"), ("Ant", "4x2")]
FALLS_OVER = ("Walker2d", "Ant")


def _run_both(config: dict[str, Any], num_steps: int, seed: int = 0) -> dict[str, int]:
    """Steps both paths in lockstep, comparing everything; returns the ends counted."""
    reference = SyncTeamVectorEnv([MaMuJoCoEnv(config) for _ in range(NUM_ENVS)])
    fast = MaMuJoCoVectorEnv(config, NUM_ENVS)
    assert fast.possible_agents == reference.possible_agents
    assert fast.state_space == reference.envs[0].state_space
    rng = np.random.default_rng(seed)
    indices, seeds = list(range(NUM_ENVS)), [seed + i for i in range(NUM_ENVS)]
    counts = {"terminated": 0, "truncated": 0, "seeded_resets": 0, "unseeded_resets": 0}
    for step in range(num_steps + 1):
        if indices:
            expected, expected_infos = reference.reset(indices, seeds)
            actual, actual_infos = fast.reset(indices, seeds)
            what = f"reset before step {step} of envs {indices} with seeds {seeds}"
            assert_bitwise_obs(actual, expected, what)
            assert_bitwise_infos(actual_infos, expected_infos, what)
            assert GLOBAL_STATE_KEY in expected_infos[0][fast.possible_agents[0]]
        if step == num_steps:
            break
        actions = {
            aid: rng.uniform(-1.0, 1.0, (NUM_ENVS, *space.shape)).astype(np.float32)
            for aid, space in fast.action_spaces.items()
        }
        expected_step, actual_step = reference.step(actions), fast.step(actions)
        what = f"step {step}"
        assert_bitwise_obs(actual_step.obs, expected_step.obs, what)
        # The reference's rewards are column views of one array; only their values count.
        assert_bitwise_obs(actual_step.rewards, expected_step.rewards, f"{what} rewards", False)
        assert_bitwise(actual_step.terminated, expected_step.terminated, f"{what} terminated")
        assert_bitwise(actual_step.truncated, expected_step.truncated, f"{what} truncated")
        assert_bitwise_infos(actual_step.infos, expected_step.infos, what)
        assert {AGENT_REWARD_KEY, ENV_TERMINATED_KEY} <= set(expected_step.infos[0]["agent_0"])
        counts["terminated"] += int(expected_step.terminated.sum())
        counts["truncated"] += int(expected_step.truncated.sum())
        ended = expected_step.terminated | expected_step.truncated
        indices = [int(i) for i in np.flatnonzero(ended)]
        # Alternate seeded and unseeded resets (None continues the env's own generator).
        seeds = [None if (step + i) % 2 else 1000 + step + i for i in indices]
        counts["seeded_resets"] += sum(s is not None for s in seeds)
        counts["unseeded_resets"] += sum(s is None for s in seeds)
    reference.close()
    fast.close()
    return counts


@pytest.mark.parametrize("agent_obsk", [0, 1])
@pytest.mark.parametrize(("scenario", "agent_conf"), TUNED)
def test_matches_reference_over_episodes(scenario: str, agent_conf: str, agent_obsk: int):
    """Every tuned scenario: whole short episodes, their truncations, falls and resets."""
    config = {
        "scenario": scenario,
        "agent_conf": agent_conf,
        "agent_obsk": agent_obsk,
        "max_episode_steps": SHORT_EPISODE,
    }
    counts = _run_both(config, SHORT_RUN)
    assert counts["truncated"] > 0, counts
    assert counts["seeded_resets"] > 0 and counts["unseeded_resets"] > 0, counts
    if scenario in FALLS_OVER:
        assert counts["terminated"] > 0, counts  # The terminal-state path was exercised.
    else:
        assert counts["terminated"] == 0, counts


@pytest.mark.parametrize(
    "extra",
    [
        {"global_state": "concat_obs"},
        {"env_kwargs": {"reset_noise_scale": 0.5, "ctrl_cost_weight": 0.3}},
    ],
    ids=["concat_obs", "env_kwargs"],
)
def test_matches_reference_with_options(extra: dict[str, Any]):
    """The concatenated-observation state and gymnasium kwargs are honoured as well."""
    config = {"agent_conf": "6x1", "max_episode_steps": 20, **extra}
    counts = _run_both(config, 45)
    assert counts["truncated"] > 0, counts


def test_matches_reference_over_a_longer_episode():
    """HalfCheetah 2x3 over 250 steps of one 200-step episode and the next."""
    counts = _run_both({"agent_conf": "2x3", "max_episode_steps": 200}, 250, seed=7)
    assert counts["truncated"] == NUM_ENVS, counts


@pytest.mark.slow
@pytest.mark.parametrize(("scenario", "agent_conf"), TUNED)
def test_matches_reference_over_full_episodes(scenario: str, agent_conf: str):
    """The robots' own 1,000-step time limit, 1,100 steps (about 15 s in all)."""
    config = {"scenario": scenario, "agent_conf": agent_conf, "agent_obsk": 1}
    counts = _run_both(config, 1100, seed=3)
    assert counts["terminated"] + counts["truncated"] >= NUM_ENVS, counts


def test_team_env_runner_samples_the_same_episodes():
    """Through HATRPO's vectorised runner, with the policy's own (seeded) exploration: the
    fast path and the reference give the same episodes, so the same actions were drawn."""
    pytest.importorskip("rllib_hatrpo.team_env_runner")
    env_config = {"agent_conf": "6x1", "max_episode_steps": 20}
    fast_kind, fast = team_runner_columns(MaMuJoCoEnv, {**env_config, "fast_vector": True})
    reference_kind, reference = team_runner_columns(
        MaMuJoCoEnv, {**env_config, "fast_vector": False}
    )
    assert (fast_kind, reference_kind) == ("MaMuJoCoVectorEnv", "SyncTeamVectorEnv")
    assert len(fast) == len(reference) > NUM_ENVS * 6  # Truncated episodes and new ones.
    for mine, theirs in zip(fast, reference, strict=True):
        assert mine[0] == theirs[0]
        names = ("obs", "actions", "rewards", "global_state")
        for name, a, b in zip(names, mine[1:], theirs[1:], strict=True):
            assert_bitwise(a, b, f"{mine[0]} {name}", layout=False)


def test_hook_offers_the_fast_path_unless_switched_off():
    config = {"agent_conf": "2x3", "max_episode_steps": 10}
    envs = [MaMuJoCoEnv(config) for _ in range(2)]
    fast = team_vector_env_of(envs)
    assert isinstance(fast, MaMuJoCoVectorEnv) and fast.num_envs == 2
    assert fast.config == envs[0].config
    fast.close()
    reference = team_vector_env_of([MaMuJoCoEnv({**config, "fast_vector": False})])
    assert isinstance(reference, SyncTeamVectorEnv)
    hopper = MaMuJoCoEnv({"scenario": "Hopper", "agent_conf": "3x1"})
    assert hopper.make_team_vector_env(2) is None


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"render_mode": "rgb_array"}, "render_mode"),
        ({"scenario": "Hopper", "agent_conf": "3x1"}, "Hopper"),
        ({"env_kwargs": {"local_categories": [["qpos"]]}}, "local_categories"),
        ({"agent_conf": None, "agent_obsk": None}, "agent_conf"),
    ],
)
def test_unsupported_configs_fall_back(config: dict[str, Any], named: str):
    """The hook's None cases; building one directly is a ValueError naming the setting."""
    reason = unsupported_reason(config)
    assert reason is not None and named in reason
    with pytest.raises(ValueError, match="fast_vector=False"):
        MaMuJoCoVectorEnv(config, 2)


def test_returned_arrays_are_not_shared():
    """Like the reference's copies: writing one agent's state or observation changes no other."""
    venv = MaMuJoCoVectorEnv({"agent_conf": "6x1", "max_episode_steps": 5}, 2)
    obs, infos = venv.reset([0, 1], [0, 1])
    actions = {aid: np.zeros((2, 1), dtype=np.float32) for aid in venv.possible_agents}
    out = venv.step(actions)
    arrays = [*obs.values(), *out.obs.values(), *out.rewards.values()]
    arrays += [info[GLOBAL_STATE_KEY] for env in [*infos, *out.infos] for info in env.values()]
    for i, a in enumerate(arrays):
        for b in arrays[i + 1 :]:
            assert not np.shares_memory(a, b)
    venv.close()


def test_bad_arguments_are_named():
    venv = MaMuJoCoVectorEnv({"agent_conf": "2x3", "max_episode_steps": 5}, 2)
    venv.reset([0, 1], [0, 1])
    good = {aid: np.zeros((2, 3), dtype=np.float32) for aid in venv.possible_agents}
    with pytest.raises(ValueError, match="No action for agent 'agent_1'"):
        venv.step({"agent_0": good["agent_0"]})
    with pytest.raises(ValueError, match=r"actions\['agent_0'\] has shape \(3,\)"):
        venv.step({**good, "agent_0": np.zeros(3)})
    with pytest.raises(ValueError, match="one seed"):
        venv.reset([0, 1], [0])
    with pytest.raises(ValueError, match="num_envs must be >= 1"):
        MaMuJoCoVectorEnv({}, 0)
    with pytest.raises(ValueError, match="unknown config key"):
        MaMuJoCoVectorEnv({"agent_cnf": "2x3"}, 1)
    venv.close()
