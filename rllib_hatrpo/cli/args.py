"""The ``hatrpo`` commands' flags as tables, the argument types, and the groups they share.

Each command declares its flags as :class:`Group` s of :class:`Flag` s; the same table builds
its parser (:func:`add_groups`), names a setting's flag in error messages (:func:`flag_namer`)
and tells the flags given on a command line from their defaults (:func:`given_flags`, what
``hatrpo train --resume`` compares). The env flags come from the env registry
(``rllib_hatrpo.envs.ENV_SUITES``): a registered suite's options appear here by themselves.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from rllib_hatrpo.experiments.spec import DEFAULT_MAX_ENV_RUNNER_RESTARTS, ENV_RUNNERS

#: The env of ``--env`` when none is given.
DEFAULT_ENV = "mpe"
#: Entries of a parsed namespace that are not flags (the command, its parser, the argv).
NOT_FLAGS = ("run", "parser", "argv")
#: HATRPOConfig's env steps per iteration (``train_batch_size_per_learner``), for the help.
_ALGORITHM_TRAIN_BATCH = 4000


@dataclasses.dataclass(frozen=True)
class Flag:
    """One command-line argument: its names and ``add_argument``'s keyword arguments."""

    names: tuple[str, ...]
    options: Mapping[str, Any]

    @property
    def dest(self) -> str:
        """The attribute of the parsed namespace (the setting's name)."""
        return self.options.get("dest") or self.names[0].lstrip("-").replace("-", "_")

    @property
    def shown(self) -> str:
        """How error messages name it: its first flag, or a positional's metavar."""
        if self.names[0].startswith("-"):
            return self.names[0]
        return str(self.options.get("metavar", self.names[0]))


def flag(*names: str, **options: Any) -> Flag:
    """A :class:`Flag`: ``flag("--seeds", type=int, nargs="+")``."""
    return Flag(names, options)


@dataclasses.dataclass(frozen=True)
class Group:
    """A titled group of flags (one section of ``--help``)."""

    title: str
    flags: tuple[Flag, ...]
    description: str | None = None


def add_groups(
    parser: argparse.ArgumentParser, groups: Iterable[Group], *, suppress_defaults: bool = False
) -> argparse.ArgumentParser:
    """Adds every group's flags to ``parser``.

    Args:
        parser: The parser.
        groups: The flag tables.
        suppress_defaults: Leave a flag that is not given out of the namespace (instead of
            setting its default): how :func:`given_flags` sees what a command line gave.
    """
    for group in groups:
        section = parser.add_argument_group(group.title, group.description)
        for item in group.flags:
            options = dict(item.options)
            if suppress_defaults:
                options["default"] = argparse.SUPPRESS
            section.add_argument(*item.names, **options)
    return parser


def given_flags(groups: Iterable[Group], argv: Sequence[str]) -> dict[str, Any]:
    """The flags of ``groups`` given in ``argv``, without the defaults of the others."""
    parser = add_groups(argparse.ArgumentParser(add_help=False), groups, suppress_defaults=True)
    return vars(parser.parse_args(argv))


def flag_values(args: argparse.Namespace) -> dict[str, Any]:
    """The flags of a parsed command line, without :data:`NOT_FLAGS` (what records keep)."""
    return {key: value for key, value in vars(args).items() if key not in NOT_FLAGS}


def flag_namer(groups: Iterable[Group]) -> Callable[[str], str]:
    """A setting's name -> its flag in ``groups`` (default: ``--<name with dashes>``)."""
    shown = {item.dest: item.shown for group in groups for item in group.flags}
    return lambda setting: shown.get(setting, "--" + setting.replace("_", "-"))


# --------------------------------------------------------------------------- argument types


def json_object(text: str) -> dict[str, Any]:
    """A JSON object, e.g. ``'{"min_share": 0.1}'``."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"invalid JSON {text!r}: {err}") from err
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object {{...}}, got {text!r}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An integer ≥ ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    parse.__name__ = "int"  # argparse names the type in its messages
    return parse


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def finite_float(text: str) -> float:
    """A finite number."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be finite, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def hidden_sizes(text: str) -> list[int]:
    """Comma-separated positive layer sizes, e.g. ``128,128``."""
    try:
        sizes = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        sizes = []
    if not sizes or any(size <= 0 for size in sizes):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive layer sizes such as 128,128, got {text!r}"
        )
    return sizes


# --------------------------------------------------------------------------- shared groups


def env_group() -> Group:
    """``--env``, one flag per env option of the registered suites, ``--env-config``."""
    from rllib_hatrpo.envs import ENV_SUITES, env_options

    default = ENV_SUITES.get(DEFAULT_ENV)
    shown = ", ".join(str(v) for v in default.default_config.values()) if default else ""
    flags = [
        flag(
            "--env",
            default=DEFAULT_ENV,
            metavar="NAME|MODULE:OBJ",
            help=f"{', '.join(ENV_SUITES)}, or package.module:ClassOrFactory (called with the "
            "env_config dict); default: %(default)s" + (f" ({shown})" if shown else ""),
        )
    ]
    for name, offered in env_options().items():
        first = offered[0][1]
        text = "; ".join(f"{suite.name}: {option.help}" for suite, option in offered)
        option_flag = "--" + name.replace("_", "-")
        if first.value_type is bool:
            flags.append(flag(option_flag, action="store_true", default=None, help=text))
            continue
        kind: Any = first.value_type
        if first.value_type is int and first.minimum is not None:
            kind = int_at_least(first.minimum)
        metavar = first.metavar or ("N" if first.value_type is int else "NAME")
        flags.append(flag(option_flag, type=kind, metavar=metavar, help=text))
    flags.append(
        flag(
            "--env-config",
            type=json_object,
            default={},
            metavar="JSON",
            help="more env_config keys, merged last, e.g. '{\"max_cycles\": 50}'",
        )
    )
    return Group("environment", tuple(flags))


def env_option_values(args: argparse.Namespace) -> dict[str, Any]:
    """The env options given on the command line (name -> value)."""
    from rllib_hatrpo.envs import env_options

    values = {name: getattr(args, name, None) for name in env_options()}
    return {name: value for name, value in values.items() if value is not None}


def model_flags() -> tuple[Flag, ...]:
    """``--train-batch-size`` and ``--hidden-sizes``."""
    from rllib_hatrpo.envs import ENV_SUITES

    by_batch: dict[int, list[str]] = {}
    for suite in ENV_SUITES.values():
        if suite.default_train_batch is not None:
            by_batch.setdefault(suite.default_train_batch, []).append(suite.name)
    own = "".join(f", {batch} for {' and '.join(names)}" for batch, names in by_batch.items())
    return (
        flag(
            "--train-batch-size",
            type=int_at_least(1),
            metavar="N",
            help=f"env steps per iteration (train_batch_size_per_learner; default "
            f"{_ALGORITHM_TRAIN_BATCH}{own})",
        ),
        flag(
            "--hidden-sizes",
            type=hidden_sizes,
            metavar="N,N",
            help="hidden layers of the actors and the critic (default 128,128)",
        ),
        flag(
            "--max-batch-memory-gib",
            type=positive_float,
            metavar="GIB",
            help="the most memory the train batch's observations and states may need, "
            "estimated before training starts (training(max_batch_memory_gib=...); default 8)",
        ),
        flag(
            "--fvp-subsample",
            type=int_at_least(1),
            metavar="K",
            help="Fisher-vector products on every K-th row of each agent's batch (gradient, "
            "line search and KL stay on the whole batch); default 5, 1: all rows",
        ),
    )


def resource_group(default_env_runners: int) -> Group:
    """EnvRunners, learners, CPUs and EnvRunner restarts."""
    return Group(
        "resources and fault tolerance",
        (
            flag(
                "--num-env-runners",
                type=int_at_least(0),
                default=default_env_runners,
                metavar="N",
                help="remote EnvRunners (0: sample in the driver); default: %(default)s",
            ),
            flag(
                "--num-envs-per-env-runner",
                type=int_at_least(1),
                default=4,
                metavar="N",
                help="vectorised envs per EnvRunner; default: %(default)s",
            ),
            flag(
                "--env-runner",
                choices=ENV_RUNNERS,
                default=ENV_RUNNERS[0],
                help="the sampler: 'team' (N envs in lockstep, one forward pass per agent) or "
                "'rllib' (RLlib's MultiAgentEnvRunner); default: %(default)s",
            ),
            flag(
                "--num-learners",
                type=int_at_least(0),
                default=0,
                metavar="N",
                help="learner actors (0: one learner in the driver, or the trial's process); "
                "each gets whole episode chunks; default: %(default)s",
            ),
            flag(
                "--num-gpus-per-learner",
                type=non_negative_float,
                default=0,
                metavar="X",
                help="GPUs of each learner (fractions allowed; 0: CPU); default: %(default)s",
            ),
            flag(
                "--num-cpus",
                type=int_at_least(1),
                metavar="N",
                help="CPUs of the local Ray instance (default: train: num-env-runners + "
                "num-learners + 1, tune: all); not used when Ray already runs or RAY_ADDRESS "
                "names a cluster",
            ),
            flag(
                "--restart-failed-env-runners",
                action=argparse.BooleanOptionalAction,
                default=True,
                help="with --num-env-runners > 0: when an EnvRunner process dies, Ray recreates "
                "it, training goes on with the others meanwhile and the new one gets the current "
                "weights (RLlib's fault_tolerance); --no-restart-failed-env-runners stops the run "
                "instead. Default: on",
            ),
            flag(
                "--max-env-runner-restarts",
                type=int_at_least(0),
                default=DEFAULT_MAX_ENV_RUNNER_RESTARTS,
                metavar="N",
                help="restarts allowed per EnvRunner; default: %(default)s",
            ),
        ),
    )


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The ``RunSpec`` settings that the shared model and resource flags give."""
    return {
        "hidden_sizes": None if args.hidden_sizes is None else tuple(args.hidden_sizes),
        "fvp_subsample": args.fvp_subsample,
        "max_batch_memory_gib": args.max_batch_memory_gib,
        "num_env_runners": args.num_env_runners,
        "num_envs_per_env_runner": args.num_envs_per_env_runner,
        "env_runner": args.env_runner,
        "restart_failed_env_runners": args.restart_failed_env_runners,
        "max_env_runner_restarts": args.max_env_runner_restarts,
        "num_learners": args.num_learners,
        "num_gpus_per_learner": args.num_gpus_per_learner,
    }
