"""What one training run is: the env, the allocator, the budgets and the resources, as data.

A :class:`RunSpec` holds every setting that ``hatrpo train``, ``hatrpo tune`` and your own
scripts choose for a HATRPO run, and :meth:`RunSpec.to_config` turns it into the
``HATRPOConfig``::

    env = resolve_env("mamujoco", {"agent_conf": "6x1"})
    spec = RunSpec(env=env.env, env_config=env.env_config, allocator="kkt",
                   train_batch_size=env.default_train_batch, num_env_runners=0)
    algo = spec.to_config(seed=0).build_algo()

A spec is picklable, so a Tune trial can build its config from one. A bad setting raises a
:class:`SettingError` that names it (``error.setting``); the command line shows it under its
flag (``--allocator``), a script under its name (``allocator``). No Ray import at module
level.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from rllib_hatrpo.core.allocation import ALL_ALLOCATOR_NAMES, ALLOCATOR_NAMES, READING_ALLOCATORS

#: RLlib's default cap on EnvRunner restarts (``AlgorithmConfig.max_num_env_runner_restarts``).
DEFAULT_MAX_ENV_RUNNER_RESTARTS = 1000
#: The samplers a run can use: HATRPO's vectorised TeamEnvRunner (default) or RLlib's own.
ENV_RUNNERS = ("team", "rllib")

# A setting's name inside a SettingError message (see `ref`): a control character around the
# name, which no user value holds.
_REF = re.compile("\x1f([A-Za-z_][A-Za-z0-9_]*)\x1f")


def ref(setting: str) -> str:
    """``setting`` as a name inside a :class:`SettingError` message.

    The message shows it as the reader names settings: ``str(error)`` as ``setting`` itself,
    the command line as its flag (``kl_range`` -> ``--kl-range``).
    """
    return f"\x1f{setting}\x1f"


class SettingError(ValueError):
    """A setting of a run with a value that cannot be used.

    Attributes:
        setting: The setting at fault, e.g. ``"allocator"`` or ``"seeds"``.
        message: What is wrong and what to change; names other settings with :func:`ref`.
    """

    def __init__(self, setting: str, message: str) -> None:
        """Names the setting at fault and says what is wrong with it."""
        self.setting = setting
        self.message = message
        super().__init__(self.render())

    def render(self, name: Callable[[str], str] = str) -> str:
        """The message, with every setting it names shown as ``name(setting)``."""
        return _REF.sub(lambda match: name(match.group(1)), self.message)

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.setting, self.message)


def import_object(path: str, setting: str) -> Any:
    """Imports ``package.module:Name`` (``Name`` may be dotted).

    Modules in the current working directory are found as ``python -m`` finds them: the
    directory is added to ``sys.path`` if it is not there (the ``hatrpo`` command's own
    ``sys.path`` starts with its script's folder instead). Ray's workers search the driver's
    working directory as well, so the EnvRunners import the same module.

    Raises:
        SettingError: ``path`` is not of that form or cannot be imported (names ``setting``).
    """
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise SettingError(setting, f"expected package.module:Name, got {path!r}")
    _search_working_directory()
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as err:
        raise SettingError(setting, f"cannot import {path!r}: {err}") from err
    return obj


def _search_working_directory() -> None:
    """Appends the current working directory to ``sys.path`` unless it is searched already."""
    cwd = os.getcwd()
    searched = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    if cwd not in searched:
        sys.path.append(cwd)
        importlib.invalidate_caches()


# --------------------------------------------------------------------------- allocators


def env_runner_settings(env_runner: str) -> dict[str, Any]:
    """``env_runners(...)`` settings of a sampler name of :data:`ENV_RUNNERS`.

    Raises:
        SettingError: An unknown name.
    """
    if env_runner not in ENV_RUNNERS:
        raise SettingError(
            "env_runner", f"{ref('env_runner')} must be one of {ENV_RUNNERS}, got {env_runner!r}"
        )
    if env_runner == "rllib":
        from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

        return {"env_runner_cls": MultiAgentEnvRunner}
    return {}


def resolve_allocator(name: Any, setting: str = "allocator") -> tuple[Any, str]:
    """(the ``kl_allocator`` value, its short name) of a built-in name or ``module:Class``.

    Args:
        name: A name of ``rllib_hatrpo.core.allocation.ALL_ALLOCATOR_NAMES`` (the paper's
            three and the readings, e.g. "waterfill"), a ``package.module:Class`` path or a
            ``KLAllocator`` subclass.
        setting: The setting ``name`` came from, for the error.

    Raises:
        SettingError: An unknown name, or a class that is not a ``KLAllocator``.
    """
    from rllib_hatrpo.core.allocation import KLAllocator

    if isinstance(name, type) and issubclass(name, KLAllocator):
        return name, name.__name__
    if name in ALL_ALLOCATOR_NAMES:
        return name, name
    if isinstance(name, str) and ":" in name:
        allocator = import_object(name, setting)
        if not (isinstance(allocator, type) and issubclass(allocator, KLAllocator)):
            raise SettingError(
                setting, f"{name!r} is not a subclass of rllib_hatrpo.core.allocation.KLAllocator"
            )
        return allocator, allocator.__name__
    raise SettingError(
        setting,
        f"unknown allocator {name!r}; choose one of {', '.join(ALLOCATOR_NAMES)} (or a reading "
        f"of the paper: {', '.join(READING_ALLOCATORS)}) or give package.module:Class",
    )


def check_allocator_options(allocator: Any, options: Mapping[str, Any], setting: str) -> None:
    """Builds the allocator with ``options`` once, so that a bad option fails now.

    Raises:
        SettingError: The allocator rejects an option (names ``setting``).
    """
    from rllib_hatrpo.core.allocation import make_allocator

    try:
        make_allocator(allocator, dict(options))
    except (TypeError, ValueError) as err:
        raise SettingError(setting, str(err)) from err


# --------------------------------------------------------------------------- envs


@dataclasses.dataclass(frozen=True)
class EnvChoice:
    """An env resolved from its name and settings (:func:`resolve_env`).

    Attributes:
        env: The env class, or the name a factory is registered under with Tune.
        env_config: The env's config: the suite's defaults, the options, the extra keys.
        label: A short name for run directories and titles (``"mpe"``, ``"MyEnv"``).
        default_train_batch: The suite's env steps per iteration (None: the algorithm's).
    """

    env: Any
    env_config: Mapping[str, Any]
    label: str
    default_train_batch: int | None = None


def resolve_env(
    name: str, options: Mapping[str, Any] | None = None, extra_config: Mapping | None = None
) -> EnvChoice:
    """The env called ``name`` with its options (``rllib_hatrpo.envs.ENV_SUITES``).

    Args:
        name: A registered suite name (``"mpe"``, ``"mamujoco"``, ...) or
            ``package.module:ClassOrFactory`` (called with the env_config dict; a factory is
            registered with Tune under that path, so that EnvRunners and ``hatrpo evaluate``
            find it).
        options: Option name -> value, e.g. ``{"agent_conf": "6x1"}``: each goes to the env
            config key the suite declares for it (any key of an env given by path).
        extra_config: More env_config keys, applied last.

    Raises:
        SettingError: An unknown env, an env path that cannot be imported or called, an
            option the suite does not offer (names that option), or an unknown MaMuJoCo robot
            or partition (:func:`~rllib_hatrpo.experiments.env_checks.check_mamujoco`).
    """
    from rllib_hatrpo.envs import ENV_SUITES

    options = dict(options or {})
    if ":" in name:
        env = import_object(name, "env")
        if not callable(env):
            raise SettingError("env", f"{name!r} is not a class or function")
        if not isinstance(env, type):
            # RLlib takes an env class or a registered name, not a factory: register it under
            # its import path (Tune's registry reaches the EnvRunners; evaluate re-imports it).
            from ray.tune.registry import register_env

            register_env(name, env)
            env = name
        env_config = dict(options)  # an env of your own takes the options as they are named
        label, batch = name.rpartition(":")[2].rpartition(".")[2], None
    else:
        suite = ENV_SUITES.get(name)
        if suite is None:
            raise SettingError(
                "env",
                f"unknown env {name!r}; choose one of {sorted(ENV_SUITES)} or give "
                "package.module:ClassOrFactory",
            )
        env_config = dict(suite.default_config)
        sources = dict.fromkeys(extra_config or {}, "env_config")
        for option_name, value in options.items():
            option = suite.option(option_name)
            if option is None:
                taken = ", ".join(ref(o.name) for o in suite.options) or "none"
                raise SettingError(
                    option_name,
                    f"{ref('env')} {name} has no such setting (its env settings: {taken}; "
                    f"other env_config keys go in {ref('env_config')})",
                )
            env_config[option.config_key] = value
            sources.setdefault(option.config_key, option_name)
        env_config.update(extra_config or {})
        if name == "mamujoco":  # its robot and partition fail only in the EnvRunners otherwise
            from rllib_hatrpo.experiments.env_checks import check_mamujoco

            check_mamujoco(env_config, sources)
        env, label, batch = suite.load(), name, suite.default_train_batch
    env_config.update(extra_config or {})
    return EnvChoice(env=env, env_config=env_config, label=label, default_train_batch=batch)


# --------------------------------------------------------------------------- the run


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """The settings of one HATRPO run; :meth:`to_config` builds its ``HATRPOConfig``.

    None means "the algorithm's default" (``HATRPOConfig``'s).

    Attributes:
        env: The env class or registered env name (``EnvChoice.env``).
        env_config: The env's config.
        allocator: ``kl_allocator``: a built-in name or a ``KLAllocator`` subclass.
        allocator_config: The allocator's options (``kl_allocator_config``).
        kl_threshold: δ per agent.
        total_kl_budget: δ_total, the joint budget (default: n · ``kl_threshold``).
        train_batch_size: Env steps per iteration (``train_batch_size_per_learner``).
        hidden_sizes: Hidden layers of the actors and the critic.
        fvp_subsample: ``fvp_subsample``: Fisher-vector products on every k-th valid row.
        max_batch_memory_gib: ``max_batch_memory_gib``: the train batch's memory budget.
        num_env_runners: Remote EnvRunners (0: sample in the driver).
        num_envs_per_env_runner: Vectorised envs per EnvRunner.
        env_runner: The sampler, one of :data:`ENV_RUNNERS`: "team" (HATRPO's
            ``TeamEnvRunner``, the config's default) or "rllib" (RLlib's
            ``MultiAgentEnvRunner``).
        restart_failed_env_runners: Recreate an EnvRunner process that dies (RLlib's
            fault tolerance) instead of stopping the run.
        max_env_runner_restarts: Restarts allowed per EnvRunner.
        num_learners: Learner actors (0: one learner in the driver's process); ``validate()``
            checks it against the envs (whole episode chunks per learner).
        num_gpus_per_learner: GPUs of each learner (fractions allowed; 0: CPU).
    """

    env: Any
    env_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    allocator: Any = "uniform"
    allocator_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    kl_threshold: float | None = None
    total_kl_budget: float | None = None
    train_batch_size: int | None = None
    hidden_sizes: tuple[int, ...] | None = None
    fvp_subsample: int | None = None
    max_batch_memory_gib: float | None = None
    num_env_runners: int = 1
    num_envs_per_env_runner: int = 4
    env_runner: str = ENV_RUNNERS[0]
    restart_failed_env_runners: bool = True
    max_env_runner_restarts: int = DEFAULT_MAX_ENV_RUNNER_RESTARTS
    num_learners: int = 0
    num_gpus_per_learner: float = 0

    def check(self, setting: str = "allocator") -> None:
        """Checks the allocator and its options before anything is built.

        Raises:
            SettingError: An unknown allocator (names ``setting``) or a bad option (names
                ``setting + "_config"``).
        """
        allocator, _ = resolve_allocator(self.allocator, setting)
        check_allocator_options(allocator, self.allocator_config, f"{setting}_config")

    def to_config(self, seed: int | None = None) -> Any:
        """The ``HATRPOConfig`` of this run (not validated), seeded if ``seed`` is given."""
        from rllib_hatrpo import HATRPOConfig

        training: dict[str, Any] = {
            "kl_allocator": self.allocator,
            "kl_allocator_config": dict(self.allocator_config),
        }
        if self.kl_threshold is not None:
            training["kl_threshold"] = self.kl_threshold
        if self.total_kl_budget is not None:
            training["total_kl_budget"] = self.total_kl_budget
        if self.train_batch_size is not None:
            training["train_batch_size_per_learner"] = self.train_batch_size
        for setting in ("fvp_subsample", "max_batch_memory_gib"):
            if getattr(self, setting) is not None:
                training[setting] = getattr(self, setting)
        if self.hidden_sizes is not None:
            training["actor_hidden_sizes"] = list(self.hidden_sizes)
            training["critic_hidden_sizes"] = list(self.hidden_sizes)
        config = (
            HATRPOConfig()
            .environment(self.env, env_config=dict(self.env_config))
            .env_runners(
                num_env_runners=self.num_env_runners,
                num_envs_per_env_runner=self.num_envs_per_env_runner,
                **env_runner_settings(self.env_runner),
            )
            .learners(
                num_learners=self.num_learners, num_gpus_per_learner=self.num_gpus_per_learner
            )
            .training(**training)
            .fault_tolerance(
                # A dead EnvRunner is recreated by Ray (actor max_restarts) and re-synced by
                # Algorithm.restore_env_runners before the next iteration; the others sample on.
                restart_failed_env_runners=self.restart_failed_env_runners,
                max_num_env_runner_restarts=self.max_env_runner_restarts,
            )
        )
        return config if seed is None else config.debugging(seed=seed)
