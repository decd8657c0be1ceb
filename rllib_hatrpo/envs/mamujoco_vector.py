"""`MaMuJoCoVectorEnv`: N MaMuJoCo envs of one config stepped as one `TeamVectorEnv`.

`MaMuJoCoEnv` steps gymnasium-robotics' `mamujoco_v1` env, which steps one gymnasium MuJoCo
env and then builds each agent's observation in Python, value by value (`obsk.build_obs`),
followed by PettingZoo's and our wrapper's per-agent dicts. Here the same N gymnasium envs
(built by `mamujoco.make_parallel_env`, so with the same kwargs, `max_episode_steps` and
`TimeLimit`) are stepped directly, and everything around the physics is done once for all N
envs with numpy:

- **Actions**: agent i's action columns go to the joint action's columns `act_ids` of its
  partition (precomputed), for all N envs in one assignment per agent.
- **Observations**: each env's MuJoCo data is copied into one row of a float64 source matrix
  `[qpos, qvel, clip(cfrc_ext, -1, 1)]` (the contact forces only where the scenario observes
  them: Ant); agent i's observation is that matrix's columns `obs_index[i]`, cast to float32.
  The index maps are traced once from MaMuJoCo's own `build_obs`, run on a stand-in of the
  MuJoCo data whose arrays hold column numbers instead of values, and checked against
  MaMuJoCo's observations of a real state when the env is built.
- **Global state**: the gymnasium env's observation, which is MaMuJoCo's `state()`, as
  float32 (or the concatenated observations with `global_state="concat_obs"`).

What comes back is exactly what `SyncTeamVectorEnv([MaMuJoCoEnv(config) ...])` returns: the
same float32 observations, float64 rewards, flags and per-agent info dicts (the gymnasium
env's info, `GLOBAL_STATE_KEY`, `AGENT_REWARD_KEY`, `ENV_TERMINATED_KEY`), bit for bit
(`tests/component/test_mamujoco_vector.py`).

Supported (`unsupported_reason`): the scenarios in `SUPPORTED_SCENARIOS` with any partition
and `agent_obsk >= 0`, without a `render_mode`, and with `env_kwargs` that go to
`gymnasium.make` only (reward weights, `reset_noise_scale`, ...). Custom factorizations or
observation categories (`agent_factorization`, `local_categories`, `global_categories`,
`gym_env`), other robots (whose observations apply functions other than a clip, e.g. Hopper's
clipped velocities or Reacher's sines) and rendering take the reference path.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from rllib_hatrpo.envs import ENV_TERMINATED_KEY, GLOBAL_STATE_KEY
from rllib_hatrpo.envs._config import merge_config
from rllib_hatrpo.envs.mamujoco import _DEFAULTS, MaMuJoCoEnv, make_parallel_env
from rllib_hatrpo.envs.pettingzoo_env import AGENT_REWARD_KEY
from rllib_hatrpo.envs.vector import TeamVectorStep

#: Robots whose MaMuJoCo observations are plain qpos/qvel entries and clipped contact forces.
SUPPORTED_SCENARIOS: tuple[str, ...] = ("HalfCheetah", "Walker2d", "Ant")
#: `mamujoco_v1.parallel_env` arguments that change the factorization or the observations.
_UNSUPPORTED_KWARGS = ("agent_factorization", "local_categories", "global_categories", "gym_env")
#: MaMuJoCo clips every contact-force observation to this range (Ant's `body_fn`).
_CFRC_CLIP = 1.0
_CHECK_STEPS = 3  # Random steps after which the traced maps are checked against MaMuJoCo.


def unsupported_reason(config: Mapping[str, Any]) -> str | None:
    """Why the fast path cannot reproduce `MaMuJoCoEnv(config)`; None if it can.

    Args:
        config: A `MaMuJoCoEnv` env config (its defaults fill what it leaves out).

    Returns:
        A sentence naming the setting, or None.

    Raises:
        ValueError: An unknown config key.
    """
    cfg = merge_config(config, _DEFAULTS, "MaMuJoCoVectorEnv")
    if cfg["render_mode"] is not None:
        return f"render_mode={cfg['render_mode']!r} (rendering needs the reference env)"
    if cfg["scenario"] not in SUPPORTED_SCENARIOS:
        return f"scenario={cfg['scenario']!r} is not one of {SUPPORTED_SCENARIOS}"
    if cfg["agent_conf"] is None or cfg["agent_obsk"] is None:
        return "agent_conf/agent_obsk None (the single-agent form of MaMuJoCo)"
    custom = sorted(set(cfg["env_kwargs"]) & set(_UNSUPPORTED_KWARGS))
    if custom:
        return f"env_kwargs {custom} change MaMuJoCo's factorization or observations"
    return None


class _IndexData:
    """A stand-in for `mujoco.MjData` whose arrays hold column numbers of the source matrix.

    `obsk.build_obs` reads `qpos`, `qvel` and `cfrc_ext` from it (and, through the nodes'
    `extra_obs`, slices of them); run on this, it returns the columns instead of the values.
    Any other field raises `AttributeError`, which `_trace_obs_index` reports.
    """

    def __init__(self, nq: int, nv: int, cfrc_shape: tuple[int, ...] | None) -> None:
        self.qpos = np.arange(nq)
        self.qvel = nq + np.arange(nv)
        if cfrc_shape is not None:
            self.cfrc_ext = (nq + nv + np.arange(int(np.prod(cfrc_shape)))).reshape(cfrc_shape)


class MaMuJoCoVectorEnv:
    """N `MaMuJoCoEnv`s of one config as a `TeamVectorEnv`, stepped with numpy index maps.

    Examples:
        >>> venv = MaMuJoCoVectorEnv({"agent_conf": "2x3", "max_episode_steps": 5}, 2)
        >>> obs, infos = venv.reset([0, 1], [0, 1])
        >>> obs["agent_0"].shape, obs["agent_0"].dtype
        ((2, 12), dtype('float32'))
        >>> out = venv.step({aid: np.zeros((2, 3), np.float32) for aid in venv.possible_agents})
        >>> out.rewards["agent_0"].shape, out.terminated.tolist(), [*out.infos[1]["agent_1"]][-3:]
        ((2,), [False, False], ['global_state', 'agent_reward', 'env_terminated'])

    Attributes:
        num_envs: N.
        possible_agents: MaMuJoCo's agents, in its order.
        observation_spaces, action_spaces, state_space: As `MaMuJoCoEnv`'s.
        envs: The N gymnasium envs (with their `TimeLimit`).
    """

    def __init__(self, config: Mapping[str, Any] | None, num_envs: int) -> None:
        """Builds N gymnasium envs as `mamujoco_v1` does, and the index maps.

        Args:
            config: A `MaMuJoCoEnv` env config.
            num_envs: N, at least 1.

        Raises:
            ValueError: `num_envs < 1`, an unknown config key, or a config the fast path does
                not support (see `unsupported_reason`; set `fast_vector=False` or change it).
            RuntimeError: The traced maps disagree with MaMuJoCo's own observations (another
                gymnasium-robotics version?); set env_config `fast_vector=False`.
        """
        if num_envs < 1:
            raise ValueError(f"MaMuJoCoVectorEnv: num_envs must be >= 1, got {num_envs}.")
        cfg = merge_config(config, _DEFAULTS, type(self).__name__)
        reason = unsupported_reason(cfg)
        if reason is not None:
            raise ValueError(
                f"MaMuJoCoVectorEnv does not support {reason}; use MaMuJoCoEnv with "
                "SyncTeamVectorEnv (env_config fast_vector=False) instead."
            )
        self.config = cfg
        self.num_envs = num_envs
        reference = MaMuJoCoEnv(cfg)  # Its spaces; its MaMuJoCo env gives and checks the maps.
        self.possible_agents = list(reference.possible_agents)
        self.observation_spaces = dict(reference.observation_spaces)
        self.action_spaces = dict(reference.action_spaces)
        self.state_space = reference.state_space
        template = reference.env
        self._init_action_index(template)
        self._init_obs_index(template)
        self._check_against(template)
        self.envs = [make_parallel_env(cfg).single_agent_env for _ in range(num_envs)]
        self._sims = [env.unwrapped for env in self.envs]
        self._concat_obs = reference.global_state == "concat_obs"  # "auto" resolved there.
        reference.close()

    # ---------------------------------------------------------------------------- TeamVectorEnv

    def reset(
        self, indices: Sequence[int], seeds: Sequence[int | None]
    ) -> tuple[dict[str, np.ndarray], list[dict[str, dict]]]:
        """Resets the envs at `indices`, as `MaMuJoCoEnv.reset(seed=seed)` does each.

        Args:
            indices: Env indices.
            seeds: One seed per index (None: continue the env's random generator).

        Returns:
            Agent ID -> float32 observations `[len(indices), obs_dim]`, and per reset env its
            infos: agent ID -> the gymnasium reset info plus `GLOBAL_STATE_KEY`.

        Raises:
            ValueError: Not one seed per index.
        """
        indices, seeds = list(indices), list(seeds)
        if len(indices) != len(seeds):
            raise ValueError(
                f"reset(): {len(indices)} indices but {len(seeds)} seeds; give one seed (or "
                "None) per index."
            )
        states, env_infos = [], []
        for index, seed in zip(indices, seeds, strict=True):
            state, info = self.envs[index].reset(seed=seed)
            states.append(state)
            env_infos.append(info)
        obs = self._observations([self._sims[i] for i in indices])
        state_copies = self._state_copies(states, obs)
        infos = [
            {aid: {**info, GLOBAL_STATE_KEY: next(state_copies)} for aid in self.possible_agents}
            for info in env_infos
        ]
        return obs, infos

    def step(self, actions: Mapping[str, np.ndarray]) -> TeamVectorStep:
        """Steps every env with `actions[agent_id][env_index]`.

        Args:
            actions: Agent ID -> actions `[num_envs, action_dim]`.

        Returns:
            The `TeamVectorStep`: float32 observations, float64 team rewards (MaMuJoCo's
            shared reward), the flags (truncated False where terminated), and per env the
            agents' infos (the gymnasium step info, global state, agent reward, terminated).

        Raises:
            ValueError: An agent has no action, or its actions have the wrong shape.
        """
        joint = self._joint_actions(actions)
        results = [env.step(row) for env, row in zip(self.envs, joint, strict=True)]
        states, rewards, terms, truncs, env_infos = zip(*results, strict=True)
        rewards = [float(r) for r in rewards]
        terms = [bool(t) for t in terms]
        truncs = [bool(t) and not term for t, term in zip(truncs, terms, strict=True)]
        obs = self._observations(self._sims)
        state_copies = self._state_copies(states, obs)
        infos = []
        for info, reward, term in zip(env_infos, rewards, terms, strict=True):
            # One template per env, in the reference's key order; each agent gets a copy of
            # it with its own copy of the state.
            base = {**info, GLOBAL_STATE_KEY: None, AGENT_REWARD_KEY: reward}
            base[ENV_TERMINATED_KEY] = term
            agent_infos = {}
            for aid in self.possible_agents:
                agent_infos[aid] = agent_info = base.copy()
                agent_info[GLOBAL_STATE_KEY] = next(state_copies)
            infos.append(agent_infos)
        team = np.array(rewards, dtype=np.float64)
        return TeamVectorStep(
            obs=obs,
            rewards={aid: team.copy() for aid in self.possible_agents},
            terminated=np.array(terms, dtype=bool),
            truncated=np.array(truncs, dtype=bool),
            infos=infos,
        )

    def _joint_actions(self, actions: Mapping[str, np.ndarray]) -> np.ndarray:
        """float64 `[num_envs, num_actuators]`: every agent's actions in its partition's columns.

        A fresh array per step: each env's row goes to MuJoCo as that step's action, as the
        fresh joint action of `MultiAgentMujocoEnv.map_local_actions_to_global_action` does.

        Raises:
            ValueError: An agent has no action, or its actions have the wrong shape.
        """
        joint = np.empty((self.num_envs, self._num_actuators), dtype=np.float64)
        for aid, columns in zip(self.possible_agents, self._act_index, strict=True):
            if aid not in actions:
                raise ValueError(
                    f"No action for agent {aid!r}: every agent of {self.possible_agents} acts at "
                    "every step."
                )
            action = np.asarray(actions[aid])
            if action.shape != (self.num_envs, len(columns)):
                raise ValueError(
                    f"actions[{aid!r}] has shape {action.shape}; expected "
                    f"{(self.num_envs, len(columns))} (num_envs, action_dim)."
                )
            joint[:, columns] = action
        return joint

    def close(self) -> None:
        """Closes every gymnasium env."""
        for env in self.envs:
            env.close()

    # ---------------------------------------------------------------------------- the maps

    def _init_action_index(self, template: Any) -> None:
        """Agent i's action entries -> the joint action's columns (MaMuJoCo's `act_ids`)."""
        self._num_actuators = int(template.single_agent_env.action_space.shape[0])
        self._act_index = [
            np.array([node.act_ids for node in partition], dtype=np.intp)
            for partition in template.agent_action_partitions
        ]
        covered = np.sort(np.concatenate(self._act_index))
        if not np.array_equal(covered, np.arange(self._num_actuators)):
            raise RuntimeError(
                f"MaMuJoCo's partition of {self.config['scenario']} {self.config['agent_conf']} "
                f"maps to actuators {covered.tolist()}, not each of 0..{self._num_actuators - 1} "
                "once; set env_config fast_vector=False."
            )

    def _init_obs_index(self, template: Any) -> None:
        """Traces `build_obs` on `_IndexData`: agent i's observation -> source columns."""
        from gymnasium_robotics.envs.multiagent_mujoco.obsk import build_obs

        data = template.single_agent_env.unwrapped.data
        self._nq, self._nv = int(data.qpos.size), int(data.qvel.size)
        categories = {c for level in template.local_categories for c in level}
        categories |= set(template.global_categories)
        self._cfrc_shape = tuple(data.cfrc_ext.shape) if "cfrc_ext" in categories else None
        index_data = _IndexData(self._nq, self._nv, self._cfrc_shape)
        self._obs_index = []
        for agent_id, aid in enumerate(self.possible_agents):
            try:
                columns = build_obs(
                    index_data,
                    template.k_dicts[agent_id],
                    template.local_categories,
                    template.mujoco_globals,
                    template.global_categories,
                    True,  # ignore_body_fn: its clip is applied to the source matrix instead.
                )
            except AttributeError as e:
                raise RuntimeError(
                    f"{aid}'s MaMuJoCo observation reads MuJoCo data beyond qpos, qvel and "
                    f"cfrc_ext ({e}); set env_config fast_vector=False."
                ) from e
            self._obs_index.append(np.asarray(columns, dtype=np.intp))

    def _check_against(self, template: Any) -> None:
        """Compares the maps' observations with MaMuJoCo's on a few random states.

        Raises:
            RuntimeError: They differ.
        """
        rng = np.random.default_rng(0)
        _, _ = template.reset(seed=0)
        for step in range(_CHECK_STEPS + 1):
            if step:
                actions = {
                    aid: rng.uniform(-1.0, 1.0, self.action_spaces[aid].shape)
                    for aid in self.possible_agents
                }
                template.step(actions)
            source = self._source_rows([template.single_agent_env.unwrapped])
            for aid, columns in zip(self.possible_agents, self._obs_index, strict=True):
                expected = np.asarray(template._get_obs()[aid], dtype=np.float64)
                if not np.array_equal(source[0, columns], expected):
                    raise RuntimeError(
                        f"MaMuJoCoVectorEnv's index map for {aid} of {self.config['scenario']} "
                        f"{self.config['agent_conf']} does not reproduce MaMuJoCo's observation "
                        f"(step {step}); set env_config fast_vector=False."
                    )

    # ---------------------------------------------------------------------------- gathering

    def _source_rows(self, sims: Sequence[Any]) -> np.ndarray:
        """float64 `[len(sims), nq + nv (+ cfrc)]`: qpos, qvel and clipped contact forces."""
        nq, nqv = self._nq, self._nq + self._nv
        width = nqv + (0 if self._cfrc_shape is None else int(np.prod(self._cfrc_shape)))
        source = np.empty((len(sims), width), dtype=np.float64)
        for row, sim in enumerate(sims):
            data = sim.data
            source[row, :nq] = data.qpos
            source[row, nq:nqv] = data.qvel
            if self._cfrc_shape is not None:
                source[row, nqv:] = data.cfrc_ext.reshape(-1)
        if self._cfrc_shape is not None:
            np.clip(source[:, nqv:], -_CFRC_CLIP, _CFRC_CLIP, out=source[:, nqv:])
        return source

    def _observations(self, sims: Sequence[Any]) -> dict[str, np.ndarray]:
        """Agent ID -> float32 observations of `sims` (unwrapped envs), `[len, obs_dim]`."""
        source = self._source_rows(sims).astype(np.float32)
        # `take`, not `source[:, columns]`: that is Fortran-ordered, and torch's kernels give
        # (ULP-)different actions for the same values in another memory layout.
        return {
            aid: np.take(source, columns, axis=1)
            for aid, columns in zip(self.possible_agents, self._obs_index, strict=True)
        }

    def _state_copies(
        self, states: Sequence[np.ndarray], obs: Mapping[str, np.ndarray]
    ) -> Iterator[np.ndarray]:
        """float32 global states, one separate array per env and agent (env-major order)."""
        if self._concat_obs:
            rows = np.concatenate([obs[aid] for aid in self.possible_agents], axis=1)
        else:
            rows = np.asarray(states, dtype=np.float32).reshape(len(states), -1)
        return iter(list(np.repeat(rows, len(self.possible_agents), axis=0)))
