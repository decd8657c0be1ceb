"""`MaMuJoCoEnv`: Multi-Agent MuJoCo (gymnasium-robotics `mamujoco_v1`) for HATRPO.

MaMuJoCo splits one MuJoCo robot's joints among agents (`agent_conf`, e.g. HalfCheetah "2x3":
two agents with three joints each; "6x1": six agents with one joint each). Each agent observes
its own joints and those up to `agent_obsk` hops away in the body graph. The env's observations,
spaces and `state()` are float64 (17-dim state for HalfCheetah) and are cast to float32 here;
actions are float32 in [-1, 1]. Episodes last `max_episode_steps` (1,000 by default) and end by
truncation.

Reward: MaMuJoCo gives every agent the same (the robot's) reward, so the team reward is their
mean, which equals that reward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rllib_hatrpo.envs._config import merge_config
from rllib_hatrpo.envs.pettingzoo_env import PettingZooEnv

_DEFAULTS: dict[str, Any] = {
    "scenario": "HalfCheetah",
    "agent_conf": "2x3",
    "agent_obsk": 1,
    "render_mode": None,
    "max_episode_steps": None,
    "global_state": "auto",
    "env_kwargs": {},
}


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

        Raises:
            ImportError: gymnasium-robotics is not installed.
            ValueError: An unknown config key.
        """
        cfg = merge_config(config, _DEFAULTS, type(self).__name__)
        try:
            from gymnasium_robotics import mamujoco_v1
        except ImportError as e:
            raise ImportError(
                "MaMuJoCoEnv needs gymnasium-robotics and mujoco: "
                "pip install 'rllib_hatrpo[mamujoco]'"
            ) from e
        kwargs = dict(cfg["env_kwargs"])
        if cfg["max_episode_steps"] is not None:
            kwargs["max_episode_steps"] = int(cfg["max_episode_steps"])
        env = mamujoco_v1.parallel_env(
            cfg["scenario"],
            cfg["agent_conf"],
            agent_obsk=cfg["agent_obsk"],
            render_mode=cfg["render_mode"],
            **kwargs,
        )
        self.config = cfg
        super().__init__(env, team_reward="mean", global_state=cfg["global_state"])
        # MaMuJoCo's env has no `render_mode` attribute; keep the requested one.
        self.render_mode = cfg["render_mode"]
