"""HATRPO for Ray RLlib: heterogeneous-agent trust region policy optimisation with a joint KL
budget allocated across agents (uniform = HATRPO, "kkt" = HATRPO-W, "greedy" = HATRPO-G).

    from rllib_hatrpo import HATRPO, HATRPOConfig

The RLlib-facing names load on first use, so that the pure maths of
:mod:`rllib_hatrpo.core` (advantages, value loss, trust region, allocation) imports without
Ray.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["HATRPO", "HATRPOConfig", "TeamEnvRunner", "agent_to_module", "register_envs"]


def register_envs() -> None:
    """Registers the built-in env names ("mamujoco", "mpe", ...) with Ray Tune's registry."""
    from rllib_hatrpo.envs import register_envs as _register

    _register()


def __getattr__(name: str) -> Any:
    if name in ("HATRPO", "HATRPOConfig", "agent_to_module"):
        from rllib_hatrpo import hatrpo

        return getattr(hatrpo, name)
    if name == "TeamEnvRunner":
        from rllib_hatrpo.team_env_runner import TeamEnvRunner

        return TeamEnvRunner
    raise AttributeError(f"module 'rllib_hatrpo' has no attribute {name!r}")
