"""Unit tests for `rllib_hatrpo.envs`: the PettingZoo wrapper, MaMuJoCo, MPE and the toy games.

No `ray.init`; the env classes import `ray.rllib` (~2 s once per session).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from typing import ClassVar

import gymnasium as gym
import numpy as np
import pytest
from pettingzoo import ParallelEnv
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rllib_hatrpo.envs import (
    ENV_CLASSES,
    GLOBAL_OPTIMUM,
    GLOBAL_STATE_KEY,
    LOCAL_OPTIMUM,
    MATRIX_GAME_OPTIMUM,
    MATRIX_GAMES,
    DifferentialGameEnv,
    MaMuJoCoEnv,
    MatrixGameEnv,
    MPEEnv,
    PettingZooEnv,
    differential_game_reward,
)

# --------------------------------------------------------------------------- helpers


def _random_actions(env, rng: np.random.Generator) -> dict:
    actions = {}
    for aid in env.possible_agents:
        space = env.action_spaces[aid]
        if isinstance(space, gym.spaces.Discrete):
            actions[aid] = int(rng.integers(space.n))
        else:
            actions[aid] = rng.uniform(space.low, space.high).astype(np.float32)
    return actions


def _check_step_contract(env, obs: dict, infos: dict) -> None:
    """Every dict keyed by the fixed agent list, float32 obs inside their spaces, state in infos."""
    assert list(obs) == env.possible_agents
    assert list(infos) == env.possible_agents
    for aid in env.possible_agents:
        assert obs[aid].dtype == np.float32
        assert env.observation_spaces[aid].contains(obs[aid]), aid
        state = infos[aid][GLOBAL_STATE_KEY]
        assert state.dtype == np.float32
        assert state.shape == env.state_space.shape
        assert env.state_space.contains(state)


class _TinyParallelEnv(ParallelEnv):
    """Two agents listed "b" before "a", float64 Box obs (one 2-D), no state(), 3 steps.

    `drop_at`: the step at which agent "b" terminates while "a" continues (None: never).
    """

    metadata: ClassVar[dict] = {"name": "tiny_v0"}

    def __init__(self, drop_at: int | None = None):
        self.possible_agents = ["b", "a"]
        self._obs_spaces = {
            "b": gym.spaces.Box(-2.0, 2.0, shape=(2,), dtype=np.float64),
            "a": gym.spaces.Box(0.0, 1.0, shape=(2, 2), dtype=np.float64),
        }
        self._act_spaces = {"b": gym.spaces.Discrete(3), "a": gym.spaces.Box(-1.0, 1.0, (2,))}
        self.drop_at = drop_at
        self.t = 0

    def observation_space(self, agent):
        return self._obs_spaces[agent]

    def action_space(self, agent):
        return self._act_spaces[agent]

    def _obs(self):
        return {"b": np.full(2, 0.5 * self.t), "a": np.full((2, 2), 0.1 * self.t)}

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        self.infos = {aid: {"env_key": aid} for aid in self.agents}
        return self._obs(), self.infos

    def step(self, actions):
        self.t += 1
        term = {aid: False for aid in self.agents}
        trunc = {aid: self.t >= 3 for aid in self.agents}
        if self.drop_at is not None and self.t == self.drop_at:
            term["b"] = True
        rewards = {"b": 1.0, "a": 3.0}
        obs = {aid: o for aid, o in self._obs().items() if aid in self.agents}
        self.agents = [aid for aid in self.agents if not (term[aid] or trunc[aid])]
        return obs, rewards, term, trunc, self.infos


# --------------------------------------------------------------------------- MaMuJoCo


@pytest.mark.parametrize(
    ("agent_conf", "obs_dims", "act_dims"),
    [("2x3", [12, 12], [3, 3]), ("6x1", [9, 9, 8, 9, 9, 8], [1] * 6)],
)
def test_mamujoco_halfcheetah_contract(agent_conf, obs_dims, act_dims):
    pytest.importorskip("gymnasium_robotics")
    env = MaMuJoCoEnv({"agent_conf": agent_conf, "agent_obsk": 1, "max_episode_steps": 5})
    agents = [f"agent_{i}" for i in range(len(obs_dims))]
    assert env.possible_agents == agents == env.env.possible_agents
    assert env.agents == agents
    assert [env.observation_spaces[a].shape[0] for a in agents] == obs_dims
    assert all(env.observation_spaces[a].dtype == np.float32 for a in agents)
    assert [env.action_spaces[a].shape[0] for a in agents] == act_dims
    assert all(env.action_spaces[a].dtype == np.float32 for a in agents)
    assert env.global_state == "state"
    assert env.state_space.shape == (17,) and env.state_space.dtype == np.float32

    rng = np.random.default_rng(0)
    obs, infos = env.reset(seed=0)
    _check_step_contract(env, obs, infos)
    np.testing.assert_allclose(infos["agent_0"][GLOBAL_STATE_KEY], env.env.state(), rtol=1e-6)
    for t in range(1, 6):
        obs, rewards, terms, truncs, infos = env.step(_random_actions(env, rng))
        _check_step_contract(env, obs, infos)
        assert list(rewards) == agents
        own = [infos[a]["agent_reward"] for a in agents]
        assert all(isinstance(r, float) for r in rewards.values())
        assert len(set(own)) == 1 and list(rewards.values()) == [own[0]] * len(agents)
        assert env.agents == agents  # Kept full even after MaMuJoCo empties its own list.
        done = t == 5
        assert truncs["__all__"] is done and terms["__all__"] is False
        assert all(truncs[a] is done for a in agents)
    assert env.env.agents == []
    env.close()


# --------------------------------------------------------------------------- MPE


def test_mpe_simple_spread_team_reward_and_length():
    pytest.importorskip("mpe2")
    env = MPEEnv({"scenario": "simple_spread", "max_cycles": 25})
    agents = ["agent_0", "agent_1", "agent_2"]
    assert env.possible_agents == agents
    assert all(env.action_spaces[a] == gym.spaces.Discrete(5) for a in agents)
    assert all(env.observation_spaces[a].shape == (18,) for a in agents)
    assert env.global_state == "state" and env.state_space.shape == (54,)
    assert env.team_reward == "sum"

    rng = np.random.default_rng(1)
    obs, infos = env.reset(seed=3)
    _check_step_contract(env, obs, infos)
    steps, differed = 0, False
    while True:
        obs, rewards, terms, truncs, infos = env.step(_random_actions(env, rng))
        steps += 1
        _check_step_contract(env, obs, infos)
        own = [infos[a]["agent_reward"] for a in agents]
        differed |= len(set(own)) > 1
        assert list(rewards.values()) == [pytest.approx(sum(own))] * 3
        if truncs["__all__"] or terms["__all__"]:
            break
    assert steps == 25 and truncs["__all__"] and not terms["__all__"]


def test_mpe_concat_obs_fallback_and_mean_reward():
    pytest.importorskip("mpe2")
    env = MPEEnv({"global_state": "concat_obs", "team_reward": "mean"})
    assert env.global_state == "concat_obs" and env.state_space.shape == (3 * 18,)
    obs, infos = env.reset(seed=0)
    expected = np.concatenate([obs[a] for a in env.possible_agents])
    np.testing.assert_array_equal(infos["agent_1"][GLOBAL_STATE_KEY], expected)
    _, rewards, _, _, infos = env.step({a: 0 for a in env.possible_agents})
    own = [infos[a]["agent_reward"] for a in env.possible_agents]
    assert rewards["agent_2"] == pytest.approx(sum(own) / 3)


def test_mpe_unknown_scenario_and_key():
    pytest.importorskip("mpe2")
    with pytest.raises(ValueError, match="Unknown MPE scenario"):
        MPEEnv({"scenario": "no_such_game"})
    with pytest.raises(ValueError, match="unknown config key"):
        MPEEnv({"max_cycle": 25})


@pytest.mark.parametrize(
    ("cls", "module", "extra"),
    [(MaMuJoCoEnv, "gymnasium_robotics", "mamujoco"), (MPEEnv, "mpe2", "mpe")],
)
def test_missing_optional_dependency_hint(monkeypatch, cls, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(ImportError, match=re.escape(f"pip install 'rllib_hatrpo[{extra}]'")):
        cls()


# --------------------------------------------------------------------------- wrapper


def test_wrapper_concat_obs_fallback_order_and_float32():
    raw = _TinyParallelEnv()
    env = PettingZooEnv(raw)  # "auto": the base class's state() raises -> fallback.
    assert env.possible_agents == ["b", "a"]
    assert env.global_state == "concat_obs"
    assert env.observation_spaces["a"].shape == (4,)  # (2, 2) flattened.
    assert env.state_space.shape == (6,) and env.state_space.dtype == np.float32
    np.testing.assert_array_equal(env.state_space.low, [-2, -2, 0, 0, 0, 0])
    assert env.action_spaces["b"] == gym.spaces.Discrete(3)
    assert env.action_spaces["a"].dtype == np.float32

    obs, infos = env.reset()
    _check_step_contract(env, obs, infos)
    _, rewards, _, _, infos = env.step({"b": 1, "a": np.zeros(2, np.float32)})
    np.testing.assert_allclose(infos["b"][GLOBAL_STATE_KEY], [0.5, 0.5, 0.1, 0.1, 0.1, 0.1])
    assert rewards == {"b": 2.0, "a": 2.0}  # mean of 1 and 3
    assert infos["a"]["env_key"] == "a" and GLOBAL_STATE_KEY not in raw.infos["a"]
    with pytest.raises(ValueError, match="does not implement state"):
        PettingZooEnv(_TinyParallelEnv(), global_state="state")


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"team_reward": "max"}, "team_reward must be one of"),
        ({"global_state": "obs"}, "global_state must be one of"),
    ],
)
def test_wrapper_rejects_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        PettingZooEnv(_TinyParallelEnv(), **kwargs)


def test_wrapper_rejects_non_box_observations():
    raw = _TinyParallelEnv()
    raw._obs_spaces["b"] = gym.spaces.Discrete(4)
    with pytest.raises(ValueError, match="Agent 'b' has observation space Discrete"):
        PettingZooEnv(raw)


def test_wrapper_agent_leaving_mid_episode_raises():
    env = PettingZooEnv(_TinyParallelEnv(drop_at=2))
    env.reset()
    actions = {"b": 0, "a": np.zeros(2, np.float32)}
    env.step(actions)
    with pytest.raises(RuntimeError, match="leaving mid-episode are not supported"):
        env.step(actions)


# --------------------------------------------------------------------------- toy games


def test_differential_game_reward_closed_form():
    """At (5, 5): 10/(2π·3) + 0.5 + 5.3·exp(-(16 + 16)/2)/(2π) = 0.530516 + 0.5 + 1.5e-7."""
    expected_55 = 10 / (6 * math.pi) + 0.5 + 5.3 * math.exp(-16) / (2 * math.pi)
    assert differential_game_reward(5.0, 5.0) == pytest.approx(expected_55, rel=1e-12)
    # At (1, 1): 10·exp(-(16 + 16/9)/2)/(6π) + 0.1 + 5.3/(2π).
    expected_11 = 10 * math.exp(-(16 + 16 / 9) / 2) / (6 * math.pi) + 0.1 + 5.3 / (2 * math.pi)
    assert differential_game_reward(1.0, 1.0) == pytest.approx(expected_11, rel=1e-12)
    values = differential_game_reward(np.array([5.0, 1.0]), np.array([5.0, 1.0]))
    np.testing.assert_allclose(values, [expected_55, expected_11], rtol=1e-12)


def test_differential_game_optima_on_grid():
    grid = np.linspace(-10, 10, 2001)  # spacing 0.01
    a1, a2 = np.meshgrid(grid, grid, indexing="ij")
    reward = differential_game_reward(a1, a2)
    i, j = np.unravel_index(np.argmax(reward), reward.shape)
    assert abs(grid[i] - GLOBAL_OPTIMUM.a1) < 0.011 and abs(grid[j] - GLOBAL_OPTIMUM.a2) < 0.011
    assert reward[i, j] == pytest.approx(GLOBAL_OPTIMUM.value, abs=1e-5)
    assert np.hypot(grid[i] - 5, grid[j] - 5) < 0.3
    # Local maximum: the best point within 1 of (1, 1) is interior and beats its neighbourhood.
    near = np.hypot(a1 - 1, a2 - 1) <= 1.0
    k = np.argmax(np.where(near, reward, -np.inf))
    assert np.hypot(a1.flat[k] - 1, a2.flat[k] - 1) < 0.3
    assert abs(a1.flat[k] - LOCAL_OPTIMUM.a1) < 0.011 and abs(a2.flat[k] - LOCAL_OPTIMUM.a2) < 0.011
    assert reward.flat[k] == pytest.approx(LOCAL_OPTIMUM.value, abs=1e-5)
    assert LOCAL_OPTIMUM.value < GLOBAL_OPTIMUM.value - 0.05
    for a, b in [(LOCAL_OPTIMUM.a1, LOCAL_OPTIMUM.a2), (GLOBAL_OPTIMUM.a1, GLOBAL_OPTIMUM.a2)]:
        centre = differential_game_reward(a, b)
        for da, db in [(0.05, 0), (-0.05, 0), (0, 0.05), (0, -0.05)]:
            assert differential_game_reward(a + da, b + db) < centre


def test_differential_game_env_one_step():
    env = DifferentialGameEnv({"action_scale": 10.0})
    obs, infos = env.reset(seed=0)
    _check_step_contract(env, obs, infos)
    assert all(np.all(o == 0) for o in obs.values())
    actions = {"agent_0": np.array([0.5], np.float32), "agent_1": np.array([2.0], np.float32)}
    obs, rewards, terms, truncs, infos = env.step(actions)
    _check_step_contract(env, obs, infos)
    assert infos["agent_0"]["played_action"] == 5.0
    assert infos["agent_1"]["played_action"] == 10.0  # clipped to 1, then scaled
    assert infos["agent_0"]["joint_action"] == (5.0, 10.0)
    assert rewards == {aid: differential_game_reward(5.0, 10.0) for aid in env.possible_agents}
    assert terms == {"agent_0": True, "agent_1": True, "__all__": True}
    assert truncs["__all__"] is False
    with pytest.raises(RuntimeError, match="reset"):
        env.step(actions)


@pytest.mark.parametrize("game", ["climbing", "penalty"])
def test_matrix_game_payoffs(game):
    env = MatrixGameEnv({"game": game})
    payoff = np.asarray(MATRIX_GAMES[game])
    assert env.optimum == MATRIX_GAME_OPTIMUM[game] == payoff.max()
    assert env.action_spaces["agent_0"] == gym.spaces.Discrete(3)
    for row in range(3):
        for col in range(3):
            obs, infos = env.reset()
            _check_step_contract(env, obs, infos)
            _, rewards, terms, _, infos = env.step({"agent_0": row, "agent_1": col})
            assert rewards == {"agent_0": payoff[row, col], "agent_1": payoff[row, col]}
            assert terms["__all__"] and infos["agent_1"]["joint_action"] == (row, col)


def test_matrix_game_values_and_custom_payoff():
    assert MATRIX_GAMES["climbing"] == ((11, -30, 0), (-30, 7, 6), (0, 0, 5))
    assert MATRIX_GAMES["penalty"] == ((10, 0, -100), (0, 2, 0), (-100, 0, 10))
    assert MATRIX_GAME_OPTIMUM == {"climbing": 11.0, "penalty": 10.0}
    env = MatrixGameEnv({"game": "penalty", "penalty_k": -5})
    env.reset()
    assert env.step({"agent_0": 0, "agent_1": 2})[1]["agent_0"] == -5.0
    env = MatrixGameEnv({"payoff": [[1, 2], [3, 4], [5, 6]]})
    assert env.action_spaces["agent_0"].n == 3 and env.action_spaces["agent_1"].n == 2
    assert env.optimum == 6.0
    with pytest.raises(ValueError, match="game must be one of"):
        MatrixGameEnv({"game": "chicken"})
    with pytest.raises(ValueError, match="n×m"):
        MatrixGameEnv({"payoff": [1, 2, 3]})


# --------------------------------------------------------------------------- RLlib


def _env_cases():
    cases = [
        ("differential_game", None),
        ("matrix_game", {"game": "climbing"}),
        ("mamujoco", {"agent_conf": "6x1", "max_episode_steps": 5}),
        ("mpe", {"continuous_actions": True}),
        ("mpe", None),
    ]
    return [pytest.param(name, cfg, id=f"{name}-{cfg}") for name, cfg in cases]


@pytest.mark.parametrize(("name", "config"), _env_cases())
def test_rllib_multiagent_env_checker(name, config):
    if name == "mamujoco":
        pytest.importorskip("gymnasium_robotics")
    if name == "mpe":
        pytest.importorskip("mpe2")
    env = ENV_CLASSES[name](config)
    check_multiagent_environments(env)
    for aid in env.possible_agents:
        assert env.get_observation_space(aid) is env.observation_spaces[aid]
        assert env.get_action_space(aid) is env.action_spaces[aid]
    obs, _ = env.reset(seed=1)
    assert env.observation_space.contains(obs)


def test_wrapper_passes_rllib_checker():
    check_multiagent_environments(PettingZooEnv(_TinyParallelEnv(), team_reward="sum"))


def test_env_classes_and_register(monkeypatch):
    assert set(ENV_CLASSES) == {"mamujoco", "mpe", "differential_game", "matrix_game"}
    registered = {}
    import ray.tune.registry

    monkeypatch.setattr(ray.tune.registry, "register_env", registered.__setitem__)
    from rllib_hatrpo.envs import register_envs

    register_envs()
    assert registered == ENV_CLASSES


def test_import_does_not_import_ray():
    """`rllib_hatrpo.envs` itself imports no Ray (its classes load lazily on first access)."""
    code = (
        "import sys\n"
        "import rllib_hatrpo.envs as e\n"
        "assert e.GLOBAL_STATE_KEY == 'global_state' and callable(e.register_envs)\n"
        "print(sorted(m for m in sys.modules if m == 'ray' or m.startswith('ray.')))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
