"""A Ray Tune sweep over allocator × KL budget × seed, resumable (``hatrpo tune``).

Every trial is :func:`rllib_hatrpo.experiments.tune.train_trial` (the function trainable shared
with the tuned examples and the benchmarks) on the config that :class:`SweepTrialBuilder`
makes from the trial's parameters ``method`` (the allocator), ``seed`` and ``kl_threshold``
(or ``total_kl_budget``), on top of the sweep's :class:`~rllib_hatrpo.experiments.spec.RunSpec`
(env, model and EnvRunner settings, as for ``hatrpo train``)::

    sweep = SweepSpec(base=RunSpec(env=MPEEnv, num_env_runners=0), allocators=("uniform", "kkt"),
                      seeds=(0, 1, 2), stop_timesteps=200_000)
    sweep.check()
    outcome = run_sweep(sweep, Path("runs/sweep"))

Search: a grid over ``allocators`` × ``kl_values`` × ``seeds`` (Tune's ``grid_search``), or
with ``num_samples`` N, N KL values per allocator and seed drawn log-uniformly from
``kl_range``. ``scheduler="asha"`` stops trials whose team return lags (``ASHAScheduler`` on
``team_return``, over ``env_steps`` or ``training_iteration``).

Output folder: ``tune/`` (Tune's experiment: one folder per trial with ``params.json``,
``progress.csv`` and its last checkpoint), ``sweep.json`` (the sweep's plan,
:func:`check_same_sweep`), ``curves.csv`` (every trial's iterations; columns ``method``,
``seed``, the KL parameter, ``training_iteration``, ``env_steps``, ``team_return``, ``trial``,
then every other metric; the layout ``benchmarks/compare.py``'s ``plot_task`` reads) and
``summary.csv`` (one row per trial: final and best team return). Running a sweep again in the
same folder restores the experiment with ``Tuner.restore``: finished trials are kept,
unfinished and errored ones continue from their last checkpoints. A rerun that only raises the
stop criteria continues every trial, finished ones included, to the new stop.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES
from rllib_hatrpo.experiments.loop import StopCriteria
from rllib_hatrpo.experiments.plans import check_plan, mismatch, record_plan
from rllib_hatrpo.experiments.records import ENV_STEPS, TEAM_RETURN, TRAINING_ITERATION
from rllib_hatrpo.experiments.spec import (
    RunSpec,
    SettingError,
    check_allocator_options,
    ref,
    resolve_allocator,
)
from rllib_hatrpo.experiments.summaries import write_results
from rllib_hatrpo.experiments.tune import METHOD, SEED

#: Name of the Tune experiment folder inside the output folder.
EXPERIMENT = "tune"
#: File of the output folder recording the plan of the sweep.
SWEEP_FILE = "sweep.json"
#: The KL parameters a sweep can vary.
KL_PARAMS = ("kl_threshold", "total_kl_budget")
#: Default KL grid when sweeping ``kl_threshold`` (HATRPOConfig's default δ).
DEFAULT_KL_THRESHOLDS = (0.01,)
#: The time axes of ASHA.
ASHA_TIME_ATTRS = (ENV_STEPS, TRAINING_ITERATION)
_ASHA_SETTINGS = ("asha_time_attr", "grace_period", "max_t")
#: The plan's stop criteria, which a rerun may raise to train every trial further.
STOP_SETTINGS = ("stop_iters", "stop_timesteps")


@dataclasses.dataclass(frozen=True)
class SweepTrialBuilder:
    """A trial's parameters -> its ``HATRPOConfig``; picklable, so Tune ships it to trials.

    Attributes:
        base: The settings every trial shares (its allocator and KL values are replaced).
        allocator_configs: Allocator name -> its options.
        kl_param: ``"kl_threshold"`` or ``"total_kl_budget"``: the parameter swept.
    """

    base: RunSpec
    allocator_configs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    kl_param: str = "kl_threshold"

    def spec(self, params: Mapping[str, Any]) -> RunSpec:
        """The run of one trial: ``params`` holds ``method``, ``seed`` and the KL value."""
        method = str(params.get(METHOD, "uniform"))
        allocator, _ = resolve_allocator(method, "allocators")
        kl = {name: None for name in KL_PARAMS}
        if params.get(self.kl_param) is not None:
            kl[self.kl_param] = float(params[self.kl_param])
        return dataclasses.replace(
            self.base,
            allocator=allocator,
            allocator_config=dict(self.allocator_configs.get(method, {})),
            **kl,
        )

    def __call__(self, params: Mapping[str, Any]) -> Any:
        """The config of one trial (seeded with ``params["seed"]``, default 0)."""
        return self.spec(params).to_config(seed=int(params.get(SEED, 0)))


@dataclasses.dataclass(frozen=True)
class SweepSpec:
    """A sweep: the trials' shared run, what varies, the budget, the scheduler.

    Attributes:
        base: The settings every trial shares (env, model, EnvRunners).
        allocators: The allocators compared (names or ``package.module:Class``; default:
            every built-in allocator).
        allocator_configs: Options per allocator name.
        kl_param: The KL setting varied: ``"kl_threshold"`` or ``"total_kl_budget"``.
        kl_values: A grid of its values (default: 0.01 for ``kl_threshold``).
        num_samples: Random search instead: this many values per allocator and seed, drawn
            log-uniformly from ``kl_range``.
        kl_range: (low, high) of the random search.
        seeds: One trial per seed (and allocator and KL value).
        stop_iters: Iterations per trial.
        stop_timesteps: Env steps per trial (neither: 20 iterations).
        checkpoint_every: Iterations between a trial's checkpoints.
        scheduler: ``"fifo"``, or ``"asha"`` to stop trials whose team return lags.
        asha_time_attr: ASHA's time axis (default: env steps with ``stop_timesteps``).
        grace_period: ASHA: time before a trial can be stopped (default: 1 iteration).
        max_t: ASHA: the longest time (default: the budget).
        reduction_factor: ASHA: keep 1/X of the trials at each rung.
        max_concurrent_trials: Trials at once (default: as many as the CPUs allow).
        max_failures: Retries of a failed trial from its last checkpoint.
    """

    base: RunSpec
    allocators: tuple[Any, ...] = ALLOCATOR_NAMES
    allocator_configs: Mapping[str, Mapping[str, Any]] = dataclasses.field(default_factory=dict)
    kl_param: str = "kl_threshold"
    kl_values: tuple[float, ...] | None = None
    num_samples: int | None = None
    kl_range: tuple[float, float] = (0.001, 0.05)
    seeds: tuple[int, ...] = (0,)
    stop_iters: int | None = None
    stop_timesteps: int | None = None
    checkpoint_every: int = 5
    scheduler: str = "fifo"
    asha_time_attr: str | None = None
    grace_period: int | None = None
    max_t: int | None = None
    reduction_factor: float = 4.0
    max_concurrent_trials: int | None = None
    max_failures: int = 2

    @property
    def builder(self) -> SweepTrialBuilder:
        """The trials' config builder."""
        return SweepTrialBuilder(
            base=self.base,
            allocator_configs={k: dict(v) for k, v in self.allocator_configs.items()},
            kl_param=self.kl_param,
        )

    def budget(self) -> StopCriteria:
        """Each trial's stop criteria: iterations and env steps, or 20 iterations."""
        return StopCriteria(iters=self.stop_iters, timesteps=self.stop_timesteps).or_default()

    def check(self) -> None:
        """Checks the sweep's settings before anything is built.

        Raises:
            SettingError: Unknown or repeated allocators, options for an allocator not swept
                or rejected by it, both or neither of a grid and random search where one is
                needed, an empty KL range, repeated seeds, or ASHA settings without
                ``scheduler="asha"`` (names the setting).
        """
        if len(set(self.allocators)) != len(self.allocators):
            raise SettingError("allocators", f"allocators repeat: {list(self.allocators)}")
        if len(set(self.seeds)) != len(self.seeds):
            raise SettingError("seeds", f"seeds repeat: {list(self.seeds)}")
        unknown = sorted(set(self.allocator_configs) - set(self.allocators))
        if unknown:
            raise SettingError(
                "allocator_configs",
                f"options for {unknown}, which {ref('allocators')} does not sweep "
                f"({list(self.allocators)}); key the JSON object by allocator name",
            )
        for name in self.allocators:
            allocator, _ = resolve_allocator(name, "allocators")
            options = self.allocator_configs.get(name, {})
            if not isinstance(options, Mapping):
                raise SettingError(
                    "allocator_configs", f"{name}: expected a JSON object, got {options}"
                )
            try:
                check_allocator_options(allocator, options, "allocator_configs")
            except SettingError as err:
                raise SettingError(err.setting, f"{name}: {err.message}") from err
        self._check_kl()
        self._check_scheduler()

    def _check_kl(self) -> None:
        if self.kl_param not in KL_PARAMS:
            raise SettingError("kl_param", f"choose one of {KL_PARAMS}, got {self.kl_param!r}")
        if self.num_samples is not None and self.kl_values is not None:
            raise SettingError(
                "num_samples",
                f"give {ref('kl_values')} (a grid) or {ref('num_samples')} (random search over "
                f"{ref('kl_range')}), not both",
            )
        low, high = self.kl_range
        if not low < high:
            raise SettingError("kl_range", f"LOW must be < HIGH, got {low} {high}")
        if self.num_samples is None and self.kl_values is None and self.kl_param != KL_PARAMS[0]:
            raise SettingError(
                "kl_values",
                f"sweeping {self.kl_param} needs its values ({ref('kl_values')} X [X ...]) or "
                f"random search ({ref('num_samples')} N {ref('kl_range')} LOW HIGH)",
            )

    def _check_scheduler(self) -> None:
        given = [name for name in _ASHA_SETTINGS if getattr(self, name) is not None]
        if self.scheduler != "asha" and given:
            raise SettingError(given[0], f"is an ASHA setting: add {ref('scheduler')} asha")
        if self.scheduler != "asha":
            return
        time_attr, max_t, grace_period = self.asha_settings(batch_size=1)
        if self.max_t is not None and self.grace_period is not None and grace_period > max_t:
            raise SettingError(
                "grace_period", f"must be <= {ref('max_t')} ({grace_period} > {max_t})"
            )
        if max_t is None:
            budget = "stop_timesteps" if time_attr == ENV_STEPS else "stop_iters"
            raise SettingError(
                "max_t",
                f"ASHA over {time_attr} needs its maximum: give {ref('max_t')} or {ref(budget)}",
            )

    def asha_settings(self, batch_size: int) -> tuple[str, int | None, int]:
        """(time_attr, max_t, grace_period) of ASHA: the settings, or defaults from the budget.

        The time axis defaults to env steps when the budget is in env steps; ``max_t`` to the
        budget on that axis; the grace period to one iteration (``batch_size`` env steps).
        """
        budget = self.budget()
        time_attr = self.asha_time_attr or (ENV_STEPS if budget.timesteps else TRAINING_ITERATION)
        default_max = budget.timesteps if time_attr == ENV_STEPS else budget.iters
        max_t = self.max_t or default_max
        grace_period = self.grace_period or (batch_size if time_attr == ENV_STEPS else 1)
        if max_t is not None:
            grace_period = min(grace_period, max_t)
        return time_attr, max_t, grace_period

    def kl_grid(self) -> list[float]:
        """The grid of KL values (without random search)."""
        return list(self.kl_values or DEFAULT_KL_THRESHOLDS)

    def example_configs(self) -> list[Any]:
        """One config per allocator (first seed and KL value), to validate before Ray starts."""
        kl_value = (self.kl_values or [None])[0] if self.num_samples is None else self.kl_range[0]
        if kl_value is None and self.kl_param == KL_PARAMS[0]:
            kl_value = DEFAULT_KL_THRESHOLDS[0]
        return [
            self.builder({METHOD: name, SEED: self.seeds[0], self.kl_param: kl_value})
            for name in self.allocators
        ]

    def param_space(self) -> dict[str, Any]:
        """Tune's ``param_space``: grids over method and seed; a grid or log-uniform KL."""
        from ray import tune

        space: dict[str, Any] = {
            METHOD: tune.grid_search(list(self.allocators)),
            SEED: tune.grid_search(list(self.seeds)),
        }
        if self.num_samples is not None:
            space[self.kl_param] = tune.loguniform(*self.kl_range)
        else:
            space[self.kl_param] = tune.grid_search(self.kl_grid())
        return space

    def scheduler_object(self, batch_size: int) -> Any:
        """Tune's scheduler: None for FIFO, else an ``ASHAScheduler``."""
        if self.scheduler != "asha":
            return None
        from ray.tune.schedulers import ASHAScheduler

        time_attr, max_t, grace_period = self.asha_settings(batch_size)
        return ASHAScheduler(
            time_attr=time_attr,
            max_t=max_t,
            grace_period=grace_period,
            reduction_factor=self.reduction_factor,
        )


def check_same_sweep(output: Path, plan: Mapping[str, Any]) -> bool:
    """Records the sweep's plan in ``OUTPUT/sweep.json``; refuses a different sweep there.

    A plan that only raises the recorded stop criteria (``stop_iters``, ``stop_timesteps``:
    each from a number to a number at least as large) extends the sweep: it is accepted, and
    recorded by :func:`record_sweep` once :func:`run_sweep` (with ``extend=True``) has
    continued every trial to the new stop. A lower stop, or one added or dropped, is another
    sweep; so is an extension of an ASHA sweep (its scheduler keeps the old ``max_t``).

    Args:
        output: The sweep's output folder.
        plan: What defines the sweep (``hatrpo tune`` records its flags, those that change
            where or how fast it runs left out).

    Returns:
        Whether the plan raises the recorded stop criteria (the sweep is extended).

    Raises:
        PlanMismatchError: ``output`` holds a sweep started with another plan.
    """
    hint = f"Rerun that sweep with its flags to resume it, or choose another {ref('output')}."
    path = output / SWEEP_FILE
    _, changes = check_plan(
        path, plan, what="a sweep", kind="flags", hint=hint, growable=STOP_SETTINGS
    )
    if changes and plan.get("scheduler") == "asha":
        hint = f"An ASHA sweep cannot be extended: choose another {ref('output')}."
        raise mismatch(path, changes, what="a sweep", kind="flags", hint=hint)
    return bool(changes)


def record_sweep(output: Path, plan: Mapping[str, Any]) -> None:
    """Records ``plan`` as the sweep's in ``OUTPUT/sweep.json`` (after an extension)."""
    record_plan(output / SWEEP_FILE, plan)


def sweep_exists(output: Path) -> bool:
    """Whether ``output`` holds a sweep's Tune experiment that can be restored."""
    from rllib_hatrpo.experiments.tune import experiment_exists

    return experiment_exists(str(output.absolute()), EXPERIMENT)


def _trial_dirname(trial: Any) -> str:
    """A short, readable trial folder: ``<method>_<kl param>=<value>_seed<s>_<trial id>``."""
    config = trial.config
    kl = next((f"{k}={config[k]:.4g}" for k in KL_PARAMS if k in config), "")
    name = f"{config.get(METHOD)}_{kl}_seed{config.get(SEED)}_{trial.trial_id}"
    return re.sub(r"[^A-Za-z0-9_.=-]", "_", name)


@dataclasses.dataclass(frozen=True)
class SweepOutcome:
    """What a finished (or stopped) sweep left: its summary and how many trials errored.

    Attributes:
        summary: One row per trial (:func:`write_results`), best final team return first.
        errors: Trials that errored (run the sweep again to resume them).
    """

    summary: Any
    errors: int


def run_sweep(
    sweep: SweepSpec,
    output: Path,
    *,
    log: Callable[[str], None] | None = None,
    extend: bool = False,
) -> SweepOutcome:
    """Runs (or resumes) the sweep in ``output`` and writes ``curves.csv`` and ``summary.csv``.

    Ray must be running. ``log`` receives the line saying that an experiment is resumed.
    ``extend`` (the stop was raised, :func:`check_same_sweep`): the finished trials continue
    from their last checkpoints to ``sweep``'s stop, as the unfinished ones do.
    """
    from ray import tune

    from rllib_hatrpo.experiments.tune import make_trainable, restore_or_create_tuner

    budget = sweep.budget()
    builder = sweep.builder
    first = {METHOD: sweep.allocators[0], SEED: sweep.seeds[0]}
    trainable = make_trainable(
        builder,
        env_steps=budget.timesteps,
        iterations=budget.iters,
        checkpoint_every=sweep.checkpoint_every,
        resources_params=first,
    )
    storage = str(output.absolute())
    tuner = restore_or_create_tuner(
        storage,
        EXPERIMENT,
        trainable,
        max_failures=sweep.max_failures,
        label="the sweep",
        log=log,
        resume_finished=extend,
        param_space=sweep.param_space(),
        tune_config=tune.TuneConfig(
            metric=TEAM_RETURN,
            mode="max",
            num_samples=sweep.num_samples or 1,
            max_concurrent_trials=sweep.max_concurrent_trials,
            scheduler=sweep.scheduler_object(builder(first).train_batch_size_per_learner),
            trial_dirname_creator=_trial_dirname,
        ),
    )
    results = tuner.fit()
    summary = write_results(output / EXPERIMENT, output, sweep.kl_param)
    return SweepOutcome(summary=summary, errors=len(results.errors))
