"""Builds a config's env once on the driver to read what HATRPO needs from it.

The critic's input space (the env's ``state_space``) is not among the per-module spaces that
RLlib's EnvRunners report, so the config probes the env for it, and ``validate()`` uses the
same probe to reject an env HATRPO cannot train on.
"""

from __future__ import annotations

import functools
import pickle
from dataclasses import dataclass
from typing import Any

import gymnasium as gym


@dataclass(frozen=True)
class EnvProbe:
    """What the config needs to know about a multi-agent env."""

    agents: tuple[str, ...]
    observation_spaces: dict[str, gym.Space]
    action_spaces: dict[str, gym.Space]
    state_space: gym.Space | None

    def network_inputs(self) -> dict[str, gym.Space]:
        """The networks' input spaces: each agent's observation, then ``"global state"``."""
        inputs = {f"agent {a!r}": self.observation_spaces[a] for a in self.agents}
        if self.state_space is not None:
            inputs["global state"] = self.state_space
        return inputs


def probe_env(env: Any, env_config: dict | None) -> EnvProbe:
    """Creates the env the way RLlib's EnvRunners do, reads its agents and spaces, closes it."""
    try:
        key = pickle.dumps((env, dict(env_config or {})))
    except Exception:  # unpicklable descriptor: probe without caching
        return _probe(env, dict(env_config or {}))
    return _cached_probe(key)


@functools.lru_cache(maxsize=16)
def _cached_probe(key: bytes) -> EnvProbe:
    env, env_config = pickle.loads(key)
    return _probe(env, env_config)


def _probe(env_descriptor: Any, env_config: dict) -> EnvProbe:
    from ray.rllib.env.env_context import EnvContext
    from ray.rllib.env.multi_agent_env import MultiAgentEnv
    from ray.tune.registry import ENV_CREATOR, _global_registry

    ctx = EnvContext(env_config, worker_index=0)
    if isinstance(env_descriptor, str):
        if not _global_registry.contains(ENV_CREATOR, env_descriptor):
            raise ValueError(
                f"config.env={env_descriptor!r} is not a registered env. Register it with "
                "ray.tune.register_env(name, creator), call rllib_hatrpo.register_envs() for "
                "the built-in names, or pass the env class itself."
            )
        env = _global_registry.get(ENV_CREATOR, env_descriptor)(ctx)
    elif callable(env_descriptor):
        env = env_descriptor(ctx)
    else:
        raise ValueError(
            f"config.env must be a registered name or a callable, got {env_descriptor!r}"
        )
    try:
        if not isinstance(env, MultiAgentEnv):
            raise ValueError(
                f"config.env builds a {type(env).__name__}, not a MultiAgentEnv: HATRPO trains "
                "several agents. Wrap a PettingZoo ParallelEnv with "
                "rllib_hatrpo.envs.PettingZooEnv."
            )
        agents = tuple(getattr(env, "possible_agents", None) or env.agents)
        return EnvProbe(
            agents=agents,
            observation_spaces={a: env.get_observation_space(a) for a in agents},
            action_spaces={a: env.get_action_space(a) for a in agents},
            state_space=getattr(env, "state_space", None),
        )
    finally:
        env.close()
