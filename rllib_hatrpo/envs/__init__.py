"""Multi-agent envs for HATRPO: a PettingZoo wrapper, MaMuJoCo, MPE and the paper's toy games.

Every env here follows one contract, the one HATRPO's team critic and sequential update rely on:

- a fixed agent order (`possible_agents`; PettingZoo's own order, never a `set`);
- float32 observations in `Box` spaces, `observation_spaces`/`action_spaces` dicts;
- a float32 `state_space` and `info[agent_id][GLOBAL_STATE_KEY]` at reset and at every step;
- the same team reward for every agent (the env's own reward in `info[agent_id]["agent_reward"]`);
- `info[agent_id][ENV_TERMINATED_KEY]` at every step: whether the env *terminated* the episode
  (True) or not (False, also when it only truncated it by a time limit);
- every agent acts at every step and all agents leave together.

The env classes subclass RLlib's `MultiAgentEnv`, so importing them imports Ray. This package's
`__init__` therefore resolves them lazily (PEP 562 `__getattr__`): `import rllib_hatrpo.envs` and
`GLOBAL_STATE_KEY` cost nothing, and Ray is imported on the first access of a class,
of `ENV_CLASSES`, or in `register_envs()`.

Examples:
    >>> from rllib_hatrpo.envs import GLOBAL_STATE_KEY
    >>> GLOBAL_STATE_KEY
    'global_state'
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

GLOBAL_STATE_KEY = "global_state"
"""Key of the global state (float32, shape `state_space.shape`) in every agent's info dict."""

ENV_TERMINATED_KEY = "env_terminated"
"""Info key: True at the step where the env terminated the episode, False otherwise.

RLlib's `MultiAgentEpisode` marks an episode whose agents were all *truncated* as terminated
too (`ray/rllib/env/multi_agent_episode.py`, `add_env_step`), so the learner cannot tell a
time limit from a terminal state by the episode's flags. A truncated episode must bootstrap
with V of its final state and a terminated one must not, so the learner reads this key when
an episode carries both flags.
"""

if TYPE_CHECKING:
    from rllib_hatrpo.envs.mamujoco import MaMuJoCoEnv
    from rllib_hatrpo.envs.mpe import MPEEnv
    from rllib_hatrpo.envs.pettingzoo_env import PettingZooEnv
    from rllib_hatrpo.envs.toy_games import (
        GLOBAL_OPTIMUM,
        LOCAL_OPTIMUM,
        MATRIX_GAME_OPTIMUM,
        MATRIX_GAMES,
        DifferentialGameEnv,
        MatrixGameEnv,
        differential_game_reward,
    )

# Public name -> submodule that defines it (imported on first access).
_LAZY_ATTRS: dict[str, str] = {
    "PettingZooEnv": "pettingzoo_env",
    "MaMuJoCoEnv": "mamujoco",
    "MPEEnv": "mpe",
    "DifferentialGameEnv": "toy_games",
    "MatrixGameEnv": "toy_games",
    "differential_game_reward": "toy_games",
    "GLOBAL_OPTIMUM": "toy_games",
    "LOCAL_OPTIMUM": "toy_games",
    "MATRIX_GAMES": "toy_games",
    "MATRIX_GAME_OPTIMUM": "toy_games",
}

# Registered env name -> (submodule, class name).
_ENV_NAMES: dict[str, tuple[str, str]] = {
    "mamujoco": ("mamujoco", "MaMuJoCoEnv"),
    "mpe": ("mpe", "MPEEnv"),
    "differential_game": ("toy_games", "DifferentialGameEnv"),
    "matrix_game": ("toy_games", "MatrixGameEnv"),
}

__all__ = [
    "ENV_CLASSES",
    "ENV_TERMINATED_KEY",
    "GLOBAL_OPTIMUM",
    "GLOBAL_STATE_KEY",
    "LOCAL_OPTIMUM",
    "MATRIX_GAMES",
    "MATRIX_GAME_OPTIMUM",
    "DifferentialGameEnv",
    "MPEEnv",
    "MaMuJoCoEnv",
    "MatrixGameEnv",
    "PettingZooEnv",
    "differential_game_reward",
    "register_envs",
]


def _env_classes() -> dict[str, type]:
    return {
        name: getattr(importlib.import_module(f"{__name__}.{module}"), cls_name)
        for name, (module, cls_name) in _ENV_NAMES.items()
    }


def __getattr__(name: str) -> Any:
    if name == "ENV_CLASSES":
        return _env_classes()
    if name in _LAZY_ATTRS:
        value = getattr(importlib.import_module(f"{__name__}.{_LAZY_ATTRS[name]}"), name)
        globals()[name] = value  # Cache: later lookups skip __getattr__.
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


def register_envs() -> None:
    """Registers every env class of `ENV_CLASSES` with Tune under its short name.

    After this call, `config.environment("mamujoco", env_config={...})` works; the names are
    "mamujoco", "mpe", "differential_game" and "matrix_game". Each class is its own creator
    (it takes the `EnvContext` dict). Imports Ray; call it in the driver before building the
    algorithm (Tune's registry lives in the cluster, so workers see the names too).
    """
    from ray.tune.registry import register_env

    for name, cls in _env_classes().items():
        register_env(name, cls)
