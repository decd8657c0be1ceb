"""`MaMuJoCoEnv`: Multi-Agent MuJoCo (gymnasium-robotics `mamujoco_v1`) for HATRPO.

MaMuJoCo splits one MuJoCo robot's joints among agents (`agent_conf`, e.g. HalfCheetah "2x3":
two agents with three joints each; "6x1": six agents with one joint each). Each agent observes
its own joints and those up to `agent_obsk` hops away in the body graph. The env's observations,
spaces and `state()` are float64 (17-dim state for HalfCheetah) and are cast to float32 here;
actions are float32 in [-1, 1]. Episodes last `max_episode_steps` (1,000 by default) and end by
truncation.

Reward: MaMuJoCo gives every agent the same (the robot's) reward, so the team reward is their
mean, which equals that reward.

Vectorised sampling: `MaMuJoCoEnv.make_team_vector_env` offers the vectorised EnvRunner a
`MaMuJoCoVectorEnv` (`rllib_hatrpo.envs.mamujoco_vector`), which steps N such envs with numpy
index maps and returns exactly what N `MaMuJoCoEnv`s return; env_config `fast_vector=False`
keeps the reference path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rllib_hatrpo.envs._config import merge_config
from rllib_hatrpo.envs.pettingzoo_env import PettingZooEnv

if TYPE_CHECKING:
    from rllib_hatrpo.envs.mamujoco_vector import MaMuJoCoVectorEnv

logger = logging.getLogger(__name__)

_DEFAULTS: dict[str, Any] = {
    "scenario": "HalfCheetah",
    "agent_conf": "2x3",
    "agent_obsk": 1,
    "render_mode": None,
    "max_episode_steps": None,
    "global_state": "auto",
    "env_kwargs": {},
    "fast_vector": True,
}


def make_parallel_env(config: Mapping[str, Any]) -> Any:
    """Builds `mamujoco_v1.parallel_env(...)` from a full `MaMuJoCoEnv` config.

    `MaMuJoCoEnv` and `MaMuJoCoVectorEnv` both build their envs here, so that their gymnasium
    envs get the same kwargs, `max_episode_steps` and `TimeLimit`.

    Args:
        config: An env config with every key of `_DEFAULTS` (see `MaMuJoCoEnv.__init__`).

    Returns:
        gymnasium-robotics' `MultiAgentMujocoEnv`.

    Raises:
        ImportError: gymnasium-robotics is not installed.
    """
    try:
        from gymnasium_robotics import mamujoco_v1
    except ImportError as e:
        raise ImportError(
            "MaMuJoCoEnv needs gymnasium-robotics and mujoco: pip install 'rllib_hatrpo[mamujoco]'"
        ) from e
    kwargs = dict(config["env_kwargs"])
    if config["max_episode_steps"] is not None:
        kwargs["max_episode_steps"] = int(config["max_episode_steps"])
    return mamujoco_v1.parallel_env(
        config["scenario"],
        config["agent_conf"],
        agent_obsk=config["agent_obsk"],
        render_mode=config["render_mode"],
        **kwargs,
    )


class MaMuJoCoEnv(PettingZooEnv):
    """Multi-Agent MuJoCo as a HATRPO-ready `MultiAgentEnv` (registered name "mamujoco").

    Examples:
        >>> env = MaMuJoCoEnv({"scenario": "HalfCheetah", "agent_conf": "6x1"})
        >>> env.possible_agents
        ['agent_0', 'agent_1', 'agent_2', 'agent_3', 'agent_4', 'agent_5']
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Builds `mamujoco_v1.parallel_env(...)` from an env config dict.

        Args:
            config: Env config (RLlib passes an `EnvContext`). Keys:
                scenario: MuJoCo robot, e.g. "HalfCheetah", "Ant", "Walker2d" (default
                    "HalfCheetah").
                agent_conf: Joint partition, e.g. "2x3", "6x1" (default "2x3").
                agent_obsk: Observation depth in the body graph (default 1).
                render_mode: None, "human" or "rgb_array".
                max_episode_steps: Episode length (default None: the robot's own, 1,000).
                global_state: "auto" (the env's 17-dim `state()` for HalfCheetah), "state" or
                    "concat_obs"; see `PettingZooEnv`.
                env_kwargs: Extra keyword arguments for `mamujoco_v1.parallel_env`.
                fast_vector: Whether `make_team_vector_env` offers the vectorised EnvRunner
                    `MaMuJoCoVectorEnv` (default True); False samples through this env.

        Raises:
            ImportError: gymnasium-robotics is not installed.
            ValueError: An unknown config key.
        """
        cfg = merge_config(config, _DEFAULTS, type(self).__name__)
        env = make_parallel_env(cfg)
        self.config = cfg
        super().__init__(env, team_reward="mean", global_state=cfg["global_state"])
        # MaMuJoCo's env has no `render_mode` attribute; keep the requested one.
        self.render_mode = cfg["render_mode"]

    def make_team_vector_env(self, num_envs: int) -> MaMuJoCoVectorEnv | None:
        """N envs of this config as one `MaMuJoCoVectorEnv`, for the vectorised EnvRunner.

        `rllib_hatrpo.envs.vector.team_vector_env_of` calls this on the first env. The fast
        path returns exactly what `SyncTeamVectorEnv` over N `MaMuJoCoEnv`s returns; it builds
        its own N envs.

        Args:
            num_envs: N.

        Returns:
            The vector env, or None (use `SyncTeamVectorEnv`) when env_config `fast_vector` is
            False or the config is one the fast path does not reproduce: a `render_mode`, a
            robot outside `mamujoco_vector.SUPPORTED_SCENARIOS` (HalfCheetah, Walker2d, Ant),
            or `env_kwargs` with `agent_factorization`, `local_categories`,
            `global_categories` or `gym_env`.
        """
        from rllib_hatrpo.envs.mamujoco_vector import MaMuJoCoVectorEnv, unsupported_reason

        if not self.config["fast_vector"]:
            return None
        reason = unsupported_reason(self.config)
        if reason is not None:
            logger.info(
                "MaMuJoCo: no vectorised fast path for %s; stepping envs one by one.", reason
            )
            return None
        return MaMuJoCoVectorEnv(self.config, num_envs)
