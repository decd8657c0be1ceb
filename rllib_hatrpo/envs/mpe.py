"""`MPEEnv`: the Multi-Particle Environments (`mpe2`) for HATRPO.

mpe2 is the maintained home of PettingZoo's MPE. `simple_spread_v3` (3 agents, the default):
observations `Box(18,)` float32, actions `Discrete(5)` (or `Box(0, 1, (5,))` with
`continuous_actions=True`), a 54-dim `state()`, `max_cycles` (25) steps per episode ending by
truncation. Per-agent rewards can differ (collision penalties are local), and mpe2 returns them
in a `defaultdict`.

Versions: mpe2's `_v3` scenarios (PettingZoo's too, since the change of PettingZoo PR #965)
integrate each particle's position with the velocity of the previous step and then apply the
force (`mpe2/_mpe_utils/core.py`, `World.integrate_state`); PettingZoo 1.22's
`simple_spread_v2` and the original MPE apply the force first and move with the new velocity.
Published MPE results (HARL's, MAPPO's) come from those older dynamics, so returns on
`simple_spread_v3` are comparable with them only roughly.

Reward: the team reward is the **sum** of the agents' rewards by default, as HARL does for MPE
(`harl/envs/pettingzoo_mpe/pettingzoo_mpe_env.py`: `total_reward = sum(...)`, given to every
agent), so returns are comparable with HARL's. Set `team_reward="mean"` to average instead.

Vectorised sampling: for `simple_spread_v3`, `MPEEnv.make_team_vector_env` offers the
vectorised EnvRunner an `MPESpreadVectorEnv` (`rllib_hatrpo.envs.mpe_vector`), which holds N
worlds in numpy arrays and returns exactly what N `MPEEnv`s return; env_config
`fast_vector=False` keeps the reference path.
"""

from __future__ import annotations

import importlib
import logging
import pkgutil
import re
from collections.abc import Mapping
from types import ModuleType
from typing import TYPE_CHECKING, Any

from rllib_hatrpo.envs._config import merge_config
from rllib_hatrpo.envs.pettingzoo_env import PettingZooEnv

if TYPE_CHECKING:
    from rllib_hatrpo.envs.mpe_vector import MPESpreadVectorEnv

logger = logging.getLogger(__name__)

_INSTALL_HINT = "MPEEnv needs mpe2: pip install 'rllib_hatrpo[mpe]'"

_DEFAULTS: dict[str, Any] = {
    "scenario": "simple_spread_v3",
    "continuous_actions": False,
    "max_cycles": 25,
    "team_reward": "sum",
    "global_state": "auto",
    "render_mode": None,
    "env_kwargs": {},
    "fast_vector": True,
}


class MPEEnv(PettingZooEnv):
    """An mpe2 scenario as a HATRPO-ready `MultiAgentEnv` (registered name "mpe").

    The default scenario is mpe2's `simple_spread_v3`, not PettingZoo 1.22's
    `simple_spread_v2`: their integrators differ (see the module docstring), and published
    MPE numbers come from the old one.

    Examples:
        >>> env = MPEEnv({"scenario": "simple_spread", "max_cycles": 25})
        >>> env.state_space.shape
        (54,)
    """

    def __init__(self, config: Mapping[str, Any] | None = None) -> None:
        """Builds `mpe2.<scenario>.parallel_env(...)` from an env config dict.

        Args:
            config: Env config (RLlib passes an `EnvContext`). Keys:
                scenario: An mpe2 module name ("simple_spread_v3", the default), optionally
                    prefixed "mpe2.", or a name without version ("simple_spread"), which
                    picks the newest version.
                continuous_actions: `Box` actions instead of `Discrete` (default False).
                max_cycles: Steps per episode (default 25).
                team_reward: "sum" (default, as HARL) or "mean" of the agents' rewards.
                global_state: "auto" (the env's `state()`), "state" or "concat_obs"; see
                    `PettingZooEnv`.
                render_mode: None, "human" or "rgb_array".
                env_kwargs: Extra keyword arguments for `parallel_env`, e.g. `{"N": 4}`.
                fast_vector: Whether `make_team_vector_env` offers the vectorised EnvRunner
                    `MPESpreadVectorEnv` (default True); False samples through this env.

        Raises:
            ImportError: mpe2 is not installed.
            ValueError: An unknown config key or scenario.
        """
        cfg = merge_config(config, _DEFAULTS, type(self).__name__)
        module = import_scenario(cfg["scenario"])
        env = module.parallel_env(
            max_cycles=int(cfg["max_cycles"]),
            continuous_actions=bool(cfg["continuous_actions"]),
            render_mode=cfg["render_mode"],
            **dict(cfg["env_kwargs"]),
        )
        self.config = cfg
        super().__init__(env, team_reward=cfg["team_reward"], global_state=cfg["global_state"])

    def make_team_vector_env(self, num_envs: int) -> MPESpreadVectorEnv | None:
        """N envs of this config as one `MPESpreadVectorEnv`, for the vectorised EnvRunner.

        `rllib_hatrpo.envs.vector.team_vector_env_of` calls this on the first env. The fast
        path returns exactly what `SyncTeamVectorEnv` over N `MPEEnv`s returns.

        Args:
            num_envs: N.

        Returns:
            The vector env, or None (use `SyncTeamVectorEnv`) when env_config `fast_vector` is
            False or the config is one the fast path does not reproduce
            (`mpe_vector.unsupported_reason`): another scenario, a `render_mode`, or
            `env_kwargs` beyond `N`, `local_ratio` and `dynamic_rescaling` that change mpe2's
            defaults (curriculum, termination on success, partial observability, benchmark
            data).
        """
        from rllib_hatrpo.envs.mpe_vector import MPESpreadVectorEnv, unsupported_reason

        if not self.config["fast_vector"]:
            return None
        reason = unsupported_reason(self.config)
        if reason is not None:
            logger.info("MPE: no vectorised fast path for %s; stepping envs one by one.", reason)
            return None
        return MPESpreadVectorEnv(self.config, num_envs)


def import_scenario(name: str) -> ModuleType:
    """Imports an mpe2 scenario module, appending the newest version if `name` has none.

    Args:
        name: "simple_spread_v3", "mpe2.simple_spread_v3" or "simple_spread".

    Returns:
        The scenario module (it has `parallel_env`).

    Raises:
        ImportError: mpe2 is not installed.
        ValueError: No such scenario; the message lists the available ones.
    """
    try:
        import mpe2
    except ImportError as e:
        raise ImportError(_INSTALL_HINT) from e
    module_name = name.removeprefix("mpe2.")
    available = sorted(
        m.name for m in pkgutil.iter_modules(mpe2.__path__) if re.fullmatch(r"[a-z_]+_v\d+", m.name)
    )
    if module_name not in available:
        versions = [m for m in available if re.fullmatch(re.escape(module_name) + r"_v\d+", m)]
        if not versions:
            raise ValueError(f"Unknown MPE scenario {name!r}; mpe2 has {available}.")
        module_name = max(versions, key=lambda m: int(m.rsplit("_v", 1)[1]))
    return importlib.import_module(f"mpe2.{module_name}")
