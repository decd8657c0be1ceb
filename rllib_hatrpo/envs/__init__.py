"""Multi-agent envs for HATRPO: a PettingZoo wrapper, MaMuJoCo, MPE and the paper's toy games.

Every env here follows one contract, the one HATRPO's team critic and sequential update rely on:

- a fixed agent order (`possible_agents`; PettingZoo's own order, never a `set`);
- observations in `Box` spaces (float32 vectors, or images of rank 3 (H, W, C) that keep a uint8
  dtype), `observation_spaces`/`action_spaces` dicts;
- a float32 `state_space` and `info[agent_id][GLOBAL_STATE_KEY]` at reset and at every step;
- the same team reward for every agent (the env's own reward in `info[agent_id]["agent_reward"]`);
- `info[agent_id][ENV_TERMINATED_KEY]` at every step: whether the env *terminated* the episode
  (True) or not (False, also when it only truncated it by a time limit);
- every agent acts at every step and all agents leave together.

The env classes subclass RLlib's `MultiAgentEnv`, so importing them imports Ray. This package's
`__init__` therefore resolves them lazily (PEP 562 `__getattr__`): `import rllib_hatrpo.envs` and
`GLOBAL_STATE_KEY` cost nothing, and Ray is imported on the first access of a class,
of `ENV_CLASSES`, or in `register_envs()`.

Registered envs: `ENV_SUITES` maps each short name ("mamujoco", "mpe", "differential_game",
"matrix_game") to an `EnvSuite`, the one place that says which class it is, which env_config
settings the command line offers for it (`--scenario`, `--agent-conf`, ...), its default
env_config and its default env steps per iteration. `register_env_suite` adds one.

Examples:
    >>> from rllib_hatrpo.envs import GLOBAL_STATE_KEY
    >>> GLOBAL_STATE_KEY
    'global_state'
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

GLOBAL_STATE_KEY = "global_state"
"""Key of the global state (float32, shape `state_space.shape`) in every agent's info dict."""
AGENT_ACTIVE_KEY = "agent_active"  # Info: False once the agent left (dead_agents="black_death").

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


@dataclasses.dataclass(frozen=True)
class EnvOption:
    """One env_config setting that an env suite offers on the command line.

    Attributes:
        name: The option's name; ``hatrpo train`` and ``hatrpo tune`` take it as
            ``--<name with dashes>``, e.g. ``"agent_conf"`` -> ``--agent-conf``.
        help: What the setting means for this suite (the command's help shows it after the
            suite's name).
        key: The env_config key the value goes to (default: ``name``).
        value_type: ``str``, ``int`` or ``bool`` (a bool option is a switch: given means
            True).
        minimum: The smallest value allowed (``int`` options only).
        metavar: How the help names the value (default: ``NAME``, or ``N`` for ``int``).
    """

    name: str
    help: str
    key: str | None = None
    value_type: type = str
    minimum: int | None = None
    metavar: str | None = None

    @property
    def config_key(self) -> str:
        """The env_config key this option sets."""
        return self.key or self.name


@dataclasses.dataclass(frozen=True)
class EnvSuite:
    """A registered env: its name, its class and what the command line offers for it.

    Attributes:
        name: The registered name, e.g. ``"mamujoco"`` (``--env mamujoco``,
            ``config.environment("mamujoco")`` after :func:`register_envs`).
        entry_point: The env class, or its import path ``"package.module:Class"`` (imported
            on first use, so that registering costs nothing).
        options: The env_config settings the command line offers (``--scenario`` ...).
        default_config: env_config values used unless an option or ``--env-config`` sets them.
        default_train_batch: Env steps per iteration when none is given (None: the
            algorithm's default, 4000).
    """

    name: str
    entry_point: str | type
    options: tuple[EnvOption, ...] = ()
    default_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    default_train_batch: int | None = None

    def load(self) -> type:
        """The env class (imports its module the first time)."""
        if isinstance(self.entry_point, type):
            return self.entry_point
        module, _, name = self.entry_point.partition(":")
        return getattr(importlib.import_module(module), name)

    def option(self, name: str) -> EnvOption | None:
        """The option called ``name``, or None if this suite does not offer it."""
        return next((option for option in self.options if option.name == name), None)


_SCENARIO = "scenario"
# One-step games: every env step is a whole episode, which RLlib's sampler handles at a few
# hundred per second; 4000 of them per iteration could miss the sampling timeout.
_ONE_STEP_GAME_BATCH = 256

#: Registered env name -> its suite, in the order the command line lists them.
ENV_SUITES: dict[str, EnvSuite] = {
    suite.name: suite
    for suite in (
        EnvSuite(
            "mamujoco",
            f"{__name__}.mamujoco:MaMuJoCoEnv",
            options=(
                EnvOption(_SCENARIO, "the robot (HalfCheetah)"),
                EnvOption("agent_conf", "joint partition, e.g. 6x1", metavar="CONF"),
                EnvOption(
                    "agent_obsk", "observation depth", value_type=int, minimum=0, metavar="K"
                ),
            ),
        ),
        EnvSuite(
            "mpe",
            f"{__name__}.mpe:MPEEnv",
            options=(
                EnvOption(_SCENARIO, "the mpe2 scenario (simple_spread_v3)"),
                EnvOption("continuous_actions", "Box actions", value_type=bool),
            ),
            default_config={_SCENARIO: "simple_spread_v3"},
        ),
        EnvSuite(
            "differential_game",
            f"{__name__}.toy_games:DifferentialGameEnv",
            default_train_batch=_ONE_STEP_GAME_BATCH,
        ),
        EnvSuite(
            "matrix_game",
            f"{__name__}.toy_games:MatrixGameEnv",
            options=(EnvOption(_SCENARIO, "the game (climbing, penalty)", key="game"),),
            default_train_batch=_ONE_STEP_GAME_BATCH,
        ),
    )
}


def register_env_suite(suite: EnvSuite) -> EnvSuite:
    """Adds ``suite`` to :data:`ENV_SUITES` (``--env <name>``, :data:`ENV_CLASSES`, ...).

    Raises:
        ValueError: The name is taken, or it holds a ``:`` (that form is an import path).
    """
    if ":" in suite.name:
        raise ValueError(f"env suite name {suite.name!r} may not contain ':'")
    if suite.name in ENV_SUITES:
        raise ValueError(f"an env suite named {suite.name!r} is already registered")
    ENV_SUITES[suite.name] = suite
    return suite


def env_options() -> dict[str, list[tuple[EnvSuite, EnvOption]]]:
    """Every option name any suite offers -> the (suite, option) pairs that offer it."""
    options: dict[str, list[tuple[EnvSuite, EnvOption]]] = {}
    for suite in ENV_SUITES.values():
        for option in suite.options:
            options.setdefault(option.name, []).append((suite, option))
    return options


__all__ = [
    "ENV_CLASSES",
    "ENV_SUITES",
    "ENV_TERMINATED_KEY",
    "GLOBAL_OPTIMUM",
    "GLOBAL_STATE_KEY",
    "LOCAL_OPTIMUM",
    "MATRIX_GAMES",
    "MATRIX_GAME_OPTIMUM",
    "DifferentialGameEnv",
    "EnvOption",
    "EnvSuite",
    "MPEEnv",
    "MaMuJoCoEnv",
    "MatrixGameEnv",
    "PettingZooEnv",
    "differential_game_reward",
    "env_options",
    "register_env_suite",
    "register_envs",
]


def _env_classes() -> dict[str, type]:
    return {name: suite.load() for name, suite in ENV_SUITES.items()}


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
    those of `ENV_SUITES`: "mamujoco", "mpe", "differential_game", "matrix_game" and any
    suite added with `register_env_suite`. Each class is its own creator
    (it takes the `EnvContext` dict). Imports Ray; call it in the driver before building the
    algorithm (Tune's registry lives in the cluster, so workers see the names too).
    """
    from ray.tune.registry import register_env

    for name, cls in _env_classes().items():
        register_env(name, cls)
