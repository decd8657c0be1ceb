"""`MPESpreadVectorEnv`: N mpe2 `simple_spread_v3` worlds stepped as one `TeamVectorEnv`.

`MPEEnv` steps mpe2's `SimpleEnv` through PettingZoo's AEC-to-parallel wrapper: one Python
`World.step` per env and step, with one small numpy operation per entity, per pair of
entities and per agent's observation. Here the N worlds' state lives in numpy arrays
(agent positions and velocities `[N, n_agents, 2]`, landmark positions `[N, n_landmarks, 2]`,
steps `[N]`) and each operation of mpe2 is done once for all N worlds, in mpe2's order
(`mpe2/_mpe_utils/core.py`, `simple_env.py`, `simple_spread/simple_spread.py`):

- **Reset** (`Scenario.reset_world`): each env keeps its own `np.random.Generator`, built as
  mpe2's `SimpleEnv._seed` builds it (`gymnasium.utils.seeding.np_random(seed)`) at a seeded
  reset and continued by an unseeded one; the agents' positions and then the landmarks' are
  drawn from `uniform(-1, 1)`, velocities are 0.
- **Actions** (`SimpleEnv._set_action`): Discrete(5) `[no-op, -x, +x, -y, +y]` gives
  u = ±1 on that axis; `Box(0, 1, (5,))` (clipped to its bounds as PettingZoo's
  `ClipOutOfBoundsWrapper` does) gives u = (a_2 - a_1, a_4 - a_3); then u ← u · sensitivity
  (5, or the agent's `accel`). The agents are silent (no communication action).
- **Forces** (`World.apply_action_force`, `apply_environment_force`, `get_collision_force`):
  f_i = u_i + 0.0 (no motor noise), then for every pair a < b of colliding entities (the
  agents; landmarks do not collide), in mpe2's loop order, with δ = p_a - p_b, d = |δ|,
  d_min = size_a + size_b and the contact margin k:
  penetration = k · log(1 + exp(-(d - d_min) / k)) (`np.logaddexp` softplus),
  F = contact_force · δ / d · penetration, f_a ← F + f_a, f_b ← -F + f_b.
- **Integration** (`World.integrate_state`, the `_v3` order): p ← p + v · dt;
  v ← v · (1 - damping); v ← v + (f / mass) · dt (dt 0.1, damping 0.25, mass 1; no
  `max_speed` in simple_spread).
- **Rewards** (`SimpleEnv._execute_world_step`): global g = -Σ_l min_i |p_i - p_l|
  (landmarks in order), local r_i = -#{j ≠ i : |p_j - p_i| < size_i + size_j}, agent i's
  reward g · (1 - local_ratio) + r_i · local_ratio; PettingZoo's parallel wrapper adds it to 0.
- **Observations** (`Scenario.observation`, float32 as `SimpleEnv.observe` casts them):
  [v_i, p_i, p_l - p_i for each landmark, p_j - p_i for each other agent, their (zero)
  communication]; the global state is their concatenation in agent order (mpe2's `state()`,
  and `global_state="concat_obs"` alike).
- **Episode end**: truncated after `max_cycles` steps, never terminated.

On top of mpe2, the team reward, the flags and each agent's info dict (`GLOBAL_STATE_KEY`,
`AGENT_REWARD_KEY`, `ENV_TERMINATED_KEY`) are built by a reference `MPEEnv`'s own
`PettingZooEnv` helpers (`_team_reward`, `_build_infos`), so "sum"/"mean" and the key order
are the wrapper's. Every number is computed with the same float64 operations in the same
order as mpe2, so the results are bitwise those of `SyncTeamVectorEnv([MPEEnv(config)] * N)`
with the same seeds: `tests/component/test_mpe_vector.py` compares observations, rewards,
flags and infos (bytes, dtypes, shapes) over whole episodes with seeded and unseeded resets.

Supported (`unsupported_reason`): `simple_spread_v3` with any `N`, `local_ratio`,
`max_cycles`, discrete or continuous actions, `dynamic_rescaling` and any `global_state`;
`curriculum`, `terminate_on_success`, `benchmark_data` and the partial-observability kwargs
only at their defaults; no `render_mode`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from gymnasium.utils import seeding

from rllib_hatrpo.envs._config import merge_config
from rllib_hatrpo.envs.mpe import _DEFAULTS, MPEEnv, import_scenario
from rllib_hatrpo.envs.vector import TeamVectorStep

SCENARIO_MODULE = "mpe2.simple_spread_v3"
#: `simple_spread_v3` kwargs the fast path reproduces whatever their value.
_FREE_KWARGS = ("N", "local_ratio", "dynamic_rescaling")
#: Kwargs reproduced only at these (mpe2's default) values.
_DEFAULT_ONLY_KWARGS: dict[str, Any] = {
    "curriculum": False,
    "terminate_on_success": False,
    "benchmark_data": False,
    "num_agent_neighbors": None,
    "num_landmark_neighbors": None,
}
_SENSITIVITY = 5.0  # `SimpleEnv._set_action`, when the agent has no `accel`.
#: Discrete actions [no-op, -x, +x, -y, +y] -> the unit force before the sensitivity.
_DISCRETE_U = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])


def unsupported_reason(config: Mapping[str, Any]) -> str | None:
    """Why the fast path cannot reproduce `MPEEnv(config)`; None if it can.

    Raises:
        ValueError: An unknown config key or scenario.
    """
    cfg = merge_config(config, _DEFAULTS, "MPESpreadVectorEnv")
    if cfg["render_mode"] is not None:
        return f"render_mode={cfg['render_mode']!r} (rendering needs the reference env)"
    module = import_scenario(cfg["scenario"]).__name__
    if module != SCENARIO_MODULE:
        return f"scenario={cfg['scenario']!r} ({module}; only {SCENARIO_MODULE} is vectorised)"
    kwargs = dict(cfg["env_kwargs"])
    unknown = sorted(k for k in kwargs if k not in _FREE_KWARGS and k not in _DEFAULT_ONLY_KWARGS)
    changed = sorted(
        k for k, v in kwargs.items() if k in _DEFAULT_ONLY_KWARGS and v != _DEFAULT_ONLY_KWARGS[k]
    )
    if unknown or changed:
        return f"env_kwargs {unknown + changed} (only {list(_FREE_KWARGS)} are reproduced)"
    return None


class MPESpreadVectorEnv:
    """N `MPEEnv`s of `simple_spread_v3` as a `TeamVectorEnv`, stepped with numpy.

    Examples:
        >>> venv = MPESpreadVectorEnv({"max_cycles": 5}, 2)
        >>> obs, infos = venv.reset([0, 1], [0, 1])
        >>> obs["agent_0"].shape, obs["agent_0"].dtype
        ((2, 18), dtype('float32'))
        >>> out = venv.step({aid: np.zeros(2, np.int64) for aid in venv.possible_agents})
        >>> out.truncated.tolist(), [*out.infos[1]["agent_2"]]
        ([False, False], ['global_state', 'agent_reward', 'env_terminated'])

    Attributes:
        num_envs: N.
        possible_agents: mpe2's agents, in its order.
        observation_spaces, action_spaces, state_space: As `MPEEnv`'s.
    """

    def __init__(self, config: Mapping[str, Any] | None, num_envs: int) -> None:
        """Reads the world's parameters from a reference `MPEEnv` of this config.

        Args:
            config: An `MPEEnv` env config.
            num_envs: N, at least 1.

        Raises:
            ValueError: `num_envs < 1`, an unknown config key, or a config the fast path does
                not support (see `unsupported_reason`).
            RuntimeError: The mpe2 world is not the one reproduced here (another version?).
        """
        if num_envs < 1:
            raise ValueError(f"MPESpreadVectorEnv: num_envs must be >= 1, got {num_envs}.")
        cfg = merge_config(config, _DEFAULTS, type(self).__name__)
        reason = unsupported_reason(cfg)
        if reason is not None:
            raise ValueError(
                f"MPESpreadVectorEnv does not support {reason}; use MPEEnv with "
                "SyncTeamVectorEnv (env_config fast_vector=False) instead."
            )
        self.config = cfg
        self.num_envs = num_envs
        self._reference = MPEEnv({**cfg, "fast_vector": False})  # Spaces and info helpers.
        self.possible_agents = list(self._reference.possible_agents)
        self.observation_spaces = dict(self._reference.observation_spaces)
        self.action_spaces = dict(self._reference.action_spaces)
        self.state_space = self._reference.state_space
        self._read_world(self._reference.env.unwrapped)
        shape = (num_envs, self._n_agents, self._dim_p)
        self._pos, self._vel = np.zeros(shape), np.zeros(shape)
        self._landmarks = np.zeros((num_envs, self._n_landmarks, self._dim_p))
        self._steps = np.zeros(num_envs, dtype=np.int64)
        self._needs_reset = np.ones(num_envs, dtype=bool)
        self._rngs = [seeding.np_random(None)[0] for _ in range(num_envs)]

    def _read_world(self, raw: Any) -> None:
        """Copies mpe2's world parameters; checks the assumptions of the vectorised step."""
        world = raw.world
        agents, landmarks = world.agents, world.landmarks
        checks = {
            "agents movable, colliding, silent, noiseless, without max_speed": all(
                a.movable and a.collide and a.silent and not a.u_noise and a.max_speed is None
                for a in agents
            ),
            "landmarks fixed and not colliding": all(
                not lm.movable and not lm.collide for lm in landmarks
            ),
            "no scripted agents": not world.scripted_agents,
        }
        failed = [what for what, ok in checks.items() if not ok]
        if failed:
            raise RuntimeError(
                f"MPESpreadVectorEnv: the mpe2 world breaks its assumptions ({failed}); set "
                "env_config fast_vector=False."
            )
        self._n_agents, self._n_landmarks = len(agents), len(landmarks)
        self._dim_p, self._dim_c = world.dim_p, world.dim_c
        self._dt, self._damping = world.dt, world.damping
        self._contact_force, self._contact_margin = world.contact_force, world.contact_margin
        self._sizes = [a.size for a in agents]
        self._mass = np.array([a.mass for a in agents])[None, :, None]
        self._sensitivity = np.array(
            [_SENSITIVITY if a.accel is None else a.accel for a in agents]
        )[None, :, None]
        self._max_cycles, self._local_ratio = raw.max_cycles, raw.local_ratio
        self._continuous = raw.continuous_actions
        n = self._n_agents
        self._others = np.array([[j for j in range(n) if j != i] for i in range(n)], np.intp)
        self._collision_dist = np.array([[si + sj for sj in self._sizes] for si in self._sizes])
        self._obs_dim = 2 * self._dim_p + self._dim_p * self._n_landmarks
        self._obs_dim += (self._dim_p + self._dim_c) * (n - 1)

    # ---------------------------------------------------------------------------- TeamVectorEnv

    def reset(
        self, indices: Sequence[int], seeds: Sequence[int | None]
    ) -> tuple[dict[str, np.ndarray], list[dict[str, dict]]]:
        """Resets the envs at `indices`, as `MPEEnv.reset(seed=seed)` does each.

        Args:
            indices: Env indices.
            seeds: One seed per index (None: continue the env's random generator).

        Returns:
            Agent ID -> float32 observations `[len(indices), obs_dim]`, and per reset env its
            infos: agent ID -> `{GLOBAL_STATE_KEY: state}`.

        Raises:
            ValueError: Not one seed per index.
        """
        indices, seeds = [int(i) for i in indices], list(seeds)
        if len(indices) != len(seeds):
            raise ValueError(
                f"reset(): {len(indices)} indices but {len(seeds)} seeds; give one seed (or "
                "None) per index."
            )
        n_entities = self._n_agents + self._n_landmarks
        for index, seed in zip(indices, seeds, strict=True):
            if seed is not None:
                self._rngs[index] = seeding.np_random(seed)[0]
            # Agents first, then landmarks, each drawing dim_p values (`reset_world`).
            draws = self._rngs[index].uniform(-1, +1, (n_entities, self._dim_p))
            self._pos[index] = draws[: self._n_agents]
            self._landmarks[index] = draws[self._n_agents :]
        self._vel[indices] = 0.0
        self._steps[indices] = 0
        self._needs_reset[indices] = False
        obs, states = self._observe(indices)
        build = self._reference._build_infos
        return obs, [build(None, state, None) for state in states]

    def step(self, actions: Mapping[str, np.ndarray]) -> TeamVectorStep:
        """Steps every world with `actions[agent_id][env_index]` (see the module docstring).

        Returns:
            The `TeamVectorStep`: float32 observations, float64 team rewards, the flags, and
            per env the agents' infos (global state, agent reward, terminated).

        Raises:
            ValueError: An agent has no action, or its actions have the wrong shape or values.
            RuntimeError: An env whose episode ended was not reset.
        """
        if self._needs_reset.any():
            raise RuntimeError(
                f"MPESpreadVectorEnv: env(s) {np.flatnonzero(self._needs_reset).tolist()} "
                "must be reset (their episode ended, or they never started) before step()."
            )
        force = self._action_force(actions) + 0.0  # `apply_action_force`: u + noise (0.0).
        pos, vel = self._pos, self._vel
        k = self._contact_margin
        for a in range(self._n_agents):  # `apply_environment_force`: pairs a < b, in order.
            for b in range(a + 1, self._n_agents):
                delta = pos[:, a] - pos[:, b]
                dist = np.sqrt(np.sum(np.square(delta), axis=-1))
                penetration = np.logaddexp(0, -(dist - self._collision_dist[a, b]) / k) * k
                pair = self._contact_force * delta / dist[:, None] * penetration[:, None]
                force[:, a] = pair + force[:, a]
                force[:, b] = -pair + force[:, b]
        pos += vel * self._dt  # `integrate_state`
        self._vel = vel = vel * (1 - self._damping)
        vel += (force / self._mass) * self._dt
        self._steps += 1
        rewards = self._agent_rewards()
        truncated = self._steps >= self._max_cycles
        self._needs_reset |= truncated
        obs, states = self._observe(range(self.num_envs))
        team = np.empty(self.num_envs, dtype=np.float64)
        infos = []
        for index, (row, state) in enumerate(zip(rewards.tolist(), states, strict=True)):
            agent_rewards = dict(zip(self.possible_agents, row, strict=True))
            team[index] = self._reference._team_reward(row)
            infos.append(self._reference._build_infos(None, state, agent_rewards, False))
        return TeamVectorStep(
            obs=obs,
            rewards={aid: team.copy() for aid in self.possible_agents},
            terminated=np.zeros(self.num_envs, dtype=bool),
            truncated=truncated,
            infos=infos,
        )

    def close(self) -> None:
        """Closes the reference env."""
        self._reference.close()

    # ---------------------------------------------------------------------------- the world

    def _action_force(self, actions: Mapping[str, np.ndarray]) -> np.ndarray:
        """float64 `[N, n_agents, dim_p]`: each agent's u (`SimpleEnv._set_action`)."""
        u = np.zeros((self.num_envs, self._n_agents, self._dim_p))
        for j, aid in enumerate(self.possible_agents):
            if aid not in actions:
                raise ValueError(
                    f"No action for agent {aid!r}: every agent of {self.possible_agents} acts at "
                    "every step."
                )
            space = self.action_spaces[aid]
            action = np.asarray(actions[aid])
            expected = (self.num_envs, *space.shape)
            if action.shape != expected:
                raise ValueError(f"actions[{aid!r}] has shape {action.shape}; expected {expected}.")
            if self._continuous:
                action = np.clip(action, space.low, space.high)  # `ClipOutOfBoundsWrapper`
                u[:, j, 0] += action[:, 2] - action[:, 1]
                u[:, j, 1] += action[:, 4] - action[:, 3]
            else:
                if not np.issubdtype(action.dtype, np.integer) or (
                    action.size and (action.min() < 0 or action.max() >= space.n)
                ):
                    raise ValueError(
                        f"actions[{aid!r}] must be integers in [0, {space.n}), got {action}."
                    )
                u[:, j] = _DISCRETE_U[action]
        u *= self._sensitivity
        return u

    def _agent_rewards(self) -> np.ndarray:
        """float64 `[N, n_agents]`: mpe2's per-agent rewards after the step."""
        pos = self._pos
        to_landmarks = pos[:, None, :, :] - self._landmarks[:, :, None, :]  # [N, L, A, dim_p]
        nearest = np.sqrt(np.sum(np.square(to_landmarks), axis=-1)).min(axis=-1)
        global_reward = np.zeros(self.num_envs)
        for lm in range(self._n_landmarks):  # `global_reward`: landmarks in order.
            global_reward = global_reward - nearest[:, lm]
        between = pos[:, :, None, :] - pos[:, None, :, :]  # [N, other, agent, dim_p]
        dist = np.sqrt(np.sum(np.square(between), axis=-1))
        collided = dist < self._collision_dist
        collided[:, np.arange(self._n_agents), np.arange(self._n_agents)] = False
        local = 0.0 - collided.sum(axis=1).astype(np.float64)  # `reward`: -1 per collision.
        ratio = self._local_ratio
        reward = global_reward[:, None] * (1 - ratio) + local * ratio
        return 0 + reward  # The parallel wrapper's `rewards[agent] += ...` from 0.

    def _observe(self, indices: Sequence[int]) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """Float32 observations of the envs at `indices` and their global states
        `[len(indices), n_agents * obs_dim]` (`Scenario.observation`, `SimpleEnv.state`)."""
        indices = list(indices)
        pos, vel, landmarks = self._pos[indices], self._vel[indices], self._landmarks[indices]
        n, n_agents, d = len(indices), self._n_agents, self._dim_p
        obs = np.zeros((n, n_agents, self._obs_dim))  # The communication slots stay 0.
        obs[:, :, 0:d] = vel
        obs[:, :, d : 2 * d] = pos
        end = 2 * d + d * self._n_landmarks
        to_landmarks = landmarks[:, None, :, :] - pos[:, :, None, :]  # [n, agent, L, d]
        obs[:, :, 2 * d : end] = to_landmarks.reshape(n, n_agents, -1)
        others = pos[:, self._others] - pos[:, :, None, :]  # [n, agent, other, d]
        obs[:, :, end : end + d * (n_agents - 1)] = others.reshape(n, n_agents, -1)
        obs = obs.astype(np.float32)
        per_agent = {aid: obs[:, j].copy() for j, aid in enumerate(self.possible_agents)}
        return per_agent, obs.reshape(n, -1)
