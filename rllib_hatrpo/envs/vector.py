"""`TeamVectorEnv`: N copies of a team env stepped in lockstep, with one array per agent.

HATRPO's envs are synchronous teams: every agent acts at every step and all agents leave
together. N such envs can then be stepped as one: one observation array per agent of shape
``[N, *obs_shape]``, one action array per agent, and one ``terminated``/``truncated`` flag per
env. The vectorised EnvRunner (``rllib_hatrpo.team_env_runner``) samples through this
interface; :class:`SyncTeamVectorEnv` provides it for any list of `MultiAgentEnv`s, and an env
may offer a faster implementation of its own (``make_team_vector_env``, see
:func:`team_vector_env_of`).

The interface has no auto-reset: the caller resets the envs whose episode ended, with
:meth:`TeamVectorEnv.reset` on their indices, before the next :meth:`TeamVectorEnv.step`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

import numpy as np

#: Name of the optional method of a `MultiAgentEnv` that builds its own `TeamVectorEnv`:
#: ``env.make_team_vector_env(num_envs) -> TeamVectorEnv | None`` (None: no fast path for
#: this configuration, use :class:`SyncTeamVectorEnv`).
MAKE_TEAM_VECTOR_ENV = "make_team_vector_env"


class TeamVectorStep(NamedTuple):
    """What one lockstep step of N envs returns.

    Attributes:
        obs: Agent ID -> observations ``[N, *obs_shape]`` after the step (the final
            observation for an env whose episode ended).
        rewards: Agent ID -> float64 rewards ``[N]``.
        terminated: bool ``[N]``: the env terminated the episode (a terminal state).
        truncated: bool ``[N]``: the episode was cut by a time limit and did not terminate.
        infos: One dict per env: agent ID -> that agent's info dict.
    """

    obs: dict[str, np.ndarray]
    rewards: dict[str, np.ndarray]
    terminated: np.ndarray
    truncated: np.ndarray
    infos: list[dict[str, dict]]


@runtime_checkable
class TeamVectorEnv(Protocol):
    """N team envs stepped in lockstep (see the module docstring)."""

    num_envs: int
    possible_agents: list[str]

    def reset(
        self, indices: Sequence[int], seeds: Sequence[int | None]
    ) -> tuple[dict[str, np.ndarray], list[dict[str, dict]]]:
        """Resets the envs at ``indices`` (seeded with ``seeds``, None: unseeded).

        Returns:
            Agent ID -> observations ``[len(indices), *obs_shape]``, and each reset env's
            infos (agent ID -> info dict), in the order of ``indices``.
        """
        ...

    def step(self, actions: Mapping[str, np.ndarray]) -> TeamVectorStep:
        """Steps every env with ``actions[agent_id][env_index]``."""
        ...

    def close(self) -> None:
        """Closes every env."""
        ...


class SyncTeamVectorEnv:
    """A :class:`TeamVectorEnv` over N `MultiAgentEnv`s, stepped one after another.

    Every agent of ``possible_agents`` must be in every step's observations, and an agent's own
    ``terminateds``/``truncateds`` flag must equal the env's ``"__all__"`` flag: agents that leave
    while others go on need ``PettingZooEnv(env, dead_agents="black_death")``.
    """

    def __init__(self, envs: Sequence[Any]) -> None:
        """Args:
        envs: N `MultiAgentEnv`s of the same kind (the same agents, in the same order).

        Raises:
            ValueError: No envs, or envs with different ``possible_agents``.
        """
        if not envs:
            raise ValueError("SyncTeamVectorEnv needs at least one env.")
        self.envs = list(envs)
        self.num_envs = len(self.envs)
        first = self.envs[0].unwrapped if hasattr(self.envs[0], "unwrapped") else self.envs[0]
        self.possible_agents = list(getattr(first, "possible_agents", None) or first.agents)
        for env in self.envs[1:]:
            inner = env.unwrapped if hasattr(env, "unwrapped") else env
            agents = list(getattr(inner, "possible_agents", None) or inner.agents)
            if agents != self.possible_agents:
                raise ValueError(
                    f"SyncTeamVectorEnv: envs have different agents: {agents} vs "
                    f"{self.possible_agents}."
                )

    def reset(
        self, indices: Sequence[int], seeds: Sequence[int | None]
    ) -> tuple[dict[str, np.ndarray], list[dict[str, dict]]]:
        obs_rows, infos = [], []
        for index, seed in zip(indices, seeds, strict=True):
            obs, info = self.envs[index].reset(seed=seed)
            obs_rows.append(self._check_agents(obs, index, "reset()"))
            infos.append(dict(info))
        return self._stack(obs_rows), infos

    def step(self, actions: Mapping[str, np.ndarray]) -> TeamVectorStep:
        obs_rows, reward_rows, infos = [], [], []
        terminated = np.zeros(self.num_envs, dtype=bool)
        truncated = np.zeros(self.num_envs, dtype=bool)
        for index, env in enumerate(self.envs):
            obs, rewards, terms, truncs, info = env.step(
                {aid: actions[aid][index] for aid in self.possible_agents}
            )
            obs_rows.append(self._check_agents(obs, index, "step()"))
            reward_rows.append([float(rewards.get(aid, 0.0)) for aid in self.possible_agents])
            terminated[index], truncated[index] = self._team_flags(terms, truncs, index)
            infos.append(dict(info))
        rewards_array = np.asarray(reward_rows, dtype=np.float64).reshape(self.num_envs, -1)
        return TeamVectorStep(
            obs=self._stack(obs_rows),
            rewards={aid: rewards_array[:, j] for j, aid in enumerate(self.possible_agents)},
            terminated=terminated,
            truncated=truncated,
            infos=infos,
        )

    def close(self) -> None:
        for env in self.envs:
            env.close()

    def _check_agents(self, obs: Mapping[str, Any], index: int, where: str) -> Mapping:
        missing = [aid for aid in self.possible_agents if aid not in obs]
        if missing:
            raise RuntimeError(
                f"Env {index}: {where} returned no observation for agent(s) {missing}. The "
                "vectorised EnvRunner needs every agent at every step; keep finished agents in "
                "the episode with PettingZooEnv(env, dead_agents='black_death'), or sample "
                "with RLlib's runner: config.env_runners(env_runner_cls=None)."
            )
        return obs

    def _team_flags(self, terms: Mapping, truncs: Mapping, index: int) -> tuple[bool, bool]:
        """The env's ``"__all__"`` flags; every agent's own flags must agree with them."""
        team_term, team_trunc = (
            bool(terms.get("__all__", False)),
            bool(truncs.get("__all__", False)),
        )
        for aid in self.possible_agents:
            own = (bool(terms.get(aid, team_term)), bool(truncs.get(aid, team_trunc)))
            if (own[0] or own[1]) != (team_term or team_trunc):
                raise RuntimeError(
                    f"Env {index}: agent {aid!r} has terminated={own[0]}, truncated={own[1]} "
                    f"while the episode has terminated={team_term}, truncated={team_trunc} "
                    '("__all__"). The vectorised EnvRunner needs all agents to leave '
                    "together; see PettingZooEnv(env, dead_agents='black_death')."
                )
        return team_term, team_trunc and not team_term

    def _stack(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, np.ndarray]:
        return {
            aid: np.stack([np.asarray(row[aid]) for row in rows]) for aid in self.possible_agents
        }


def team_vector_env_of(envs: Sequence[Any]) -> Any:
    """The fastest :class:`TeamVectorEnv` for ``envs`` (N copies of one env).

    Asks the first env's ``make_team_vector_env(len(envs))`` (its own fast implementation,
    e.g. MaMuJoCo's) and falls back to :class:`SyncTeamVectorEnv` over ``envs`` when the env
    has none or returns None.
    """
    first = envs[0].unwrapped if hasattr(envs[0], "unwrapped") else envs[0]
    make = getattr(first, MAKE_TEAM_VECTOR_ENV, None)
    fast = make(len(envs)) if callable(make) else None
    return fast if fast is not None else SyncTeamVectorEnv(envs)
