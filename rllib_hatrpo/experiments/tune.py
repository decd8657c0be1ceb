"""Training under Ray Tune: one trial = one algorithm trained to an env-step budget, resumable.

A Tune trial here is a *function* trainable, :func:`train_trial`, that builds any RLlib
algorithm config (HATRPO with any allocator, or RLlib's PPO for comparison), restores it from
the trial's last checkpoint when Tune resumes the trial, and reports one flat row per iteration
(:func:`rllib_hatrpo.experiments.records.flatten_result`: ``env_steps``, ``team_return``, the
allocation
metrics, ...). The same trainable serves the tuned examples, the comparison benchmark and
``hatrpo tune``, so their Tune folders all read back with :func:`read_trials`.

Example::

    from ray import tune
    trainable = make_trainable(build_config, env_steps=100_000)
    tuner = tune.Tuner(trainable, param_space={"method": tune.grid_search(["uniform", "kkt"]),
                                               "seed": tune.grid_search([0, 1, 2])})

``build_config(params)`` maps one trial's parameters to an unvalidated ``AlgorithmConfig``; it
must be picklable (a module-level function or a method of a picklable object).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

#: Name of the metric every trial reports as its team return (Tune's ``metric=``).
TEAM_RETURN = "team_return"

#: Fraction of a run's last iterations averaged into its final return.
FINAL_FRACTION = 0.1

_FIX = (
    "The trial does not continue from it: restore that checkpoint folder from a backup, or "
    "run the experiment again in a new output folder (or after deleting this one)."
)


def train_trial(
    config: Mapping[str, Any],
    *,
    build_config: Callable[[Mapping[str, Any]], Any],
    env_steps: int | None = None,
    iterations: int | None = None,
    checkpoint_every: int = 5,
) -> None:
    """Body of a Tune function trainable: trains ``build_config(params)`` until a budget.

    Resumes from ``tune.get_checkpoint()`` (learner, allocator and RNG state, env-step
    counters) when Tune restores the trial; checkpoints every ``checkpoint_every`` iterations
    and at the end. Saving and restoring are those of ``hatrpo train``
    (:func:`~rllib_hatrpo.experiments.checkpoints.save_checkpoint_atomically`, with a manifest and
    no
    non-finite module state; :func:`~rllib_hatrpo.experiments.checkpoints.restore_checkpoint`): a
    checkpoint that is damaged, incomplete or cannot be restored raises a ``CheckpointError``
    naming the file, so the trial errors rather than silently starting afresh or continuing
    with missing parts.

    Args:
        config: The trial's parameters (Tune's resolved ``param_space``; Tune requires the
            name ``config``).
        build_config: The trial's parameters -> an ``AlgorithmConfig``.
        env_steps: Stop once this many env steps were sampled (lifetime).
        iterations: Stop after this many training iterations.
        checkpoint_every: Iterations between checkpoints (the last one is always saved).
    """
    from ray import tune

    from rllib_hatrpo.experiments.checkpoints import (
        CheckpointError,
        restore_checkpoint,
        save_checkpoint_atomically,
    )
    from rllib_hatrpo.experiments.records import flatten_result, reset_iteration_timers

    if env_steps is None and iterations is None:
        raise ValueError("train_trial needs a budget: env_steps or iterations")
    algo = build_config(config).build_algo()
    try:
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as path:
                try:
                    restore_checkpoint(algo, path)
                except CheckpointError as err:
                    raise CheckpointError(f"{err}. {_FIX}") from err
        agents = sorted(algo.config.policies)
        while True:
            reset_iteration_timers(algo)
            row = flatten_result(algo.train(), agents)
            done = (env_steps is not None and row["env_steps"] >= env_steps) or (
                iterations is not None and algo.iteration >= iterations
            )
            row = {key: value for key, value in row.items() if not _is_nan(value)}
            if done or algo.iteration % checkpoint_every == 0:
                with tempfile.TemporaryDirectory() as tmp:
                    path = save_checkpoint_atomically(algo, Path(tmp) / "checkpoint")
                    tune.report(row, checkpoint=tune.Checkpoint.from_directory(path))
            else:
                tune.report(row)
            if done:
                return
    finally:
        algo.stop()


def make_trainable(
    build_config: Callable[[Mapping[str, Any]], Any],
    *,
    env_steps: int | None = None,
    iterations: int | None = None,
    checkpoint_every: int = 5,
    resources_params: Mapping[str, Any] | None = None,
) -> Any:
    """:func:`train_trial` bound to a config builder and budget, with the trial's resources.

    The resources are the algorithm's own request (driver, EnvRunners, learners) for the
    config built from ``resources_params`` (default: an empty dict), so a trial fits on a
    cluster node exactly as a plain ``algo.train()`` run would.
    """
    import functools

    from ray import tune

    config = build_config(dict(resources_params or {}))
    resources = config.algo_class.default_resource_request(config)
    body = functools.partial(
        train_trial,
        build_config=build_config,
        env_steps=env_steps,
        iterations=iterations,
        checkpoint_every=checkpoint_every,
    )
    return tune.with_resources(body, resources)


def restore_or_create_tuner(
    storage: str,
    name: str,
    trainable: Any,
    *,
    max_failures: int = 0,
    label: str = "the Tune experiment",
    **tuner_kwargs: Any,
) -> Any:
    """The Tune experiment ``storage/name``: restored if it exists, else a new ``Tuner``.

    A restored experiment keeps its finished trials and continues unfinished and errored ones
    from their last checkpoints (its original parameters and settings are kept: callers
    guard against a changed plan). A new one keeps each trial's latest checkpoint only.

    Args:
        storage: Tune's storage path (a local folder or a URI).
        name: The experiment's name (its folder under ``storage``).
        trainable: The trainable (e.g. from :func:`make_trainable`).
        max_failures: Retries of a failed trial from its last checkpoint.
        label: What the "resuming ..." message calls the experiment.
        **tuner_kwargs: ``param_space``, ``tune_config`` ... of a new ``tune.Tuner``.
    """
    from ray import tune

    path = f"{storage.rstrip('/')}/{name}"
    if tune.Tuner.can_restore(path):
        print(f"resuming {label} in {path}: finished trials are kept", flush=True)
        return tune.Tuner.restore(
            path, trainable=trainable, resume_unfinished=True, resume_errored=True
        )
    run_config = tune.RunConfig(
        name=name,
        storage_path=storage,
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        failure_config=tune.FailureConfig(max_failures=max_failures),
        verbose=1,
    )
    return tune.Tuner(trainable, run_config=run_config, **tuner_kwargs)


def read_trials(experiment: str | Path) -> pd.DataFrame:
    """Learning curves of every trial of a Tune experiment folder, one row per iteration.

    Columns: the trial's parameters (from ``params.json``), ``trial`` (its folder name) and the
    reported metrics (from ``progress.csv``). Trials that reported nothing are left out.
    """
    frames = []
    for params_file in sorted(Path(experiment).glob("*/params.json")):
        progress = params_file.with_name("progress.csv")
        if not progress.is_file() or progress.stat().st_size == 0:
            continue
        frame = pd.read_csv(progress)
        if frame.empty:
            continue
        params = json.loads(params_file.read_text())
        for key, value in params.items():
            if isinstance(value, str | int | float | bool):
                frame[key] = value
        frame["trial"] = params_file.parent.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def final_return(curve: pd.DataFrame, fraction: float = FINAL_FRACTION) -> float:
    """A run's final team return: the mean over its last ``fraction`` of iterations (≥ 1)."""
    if TEAM_RETURN not in curve:  # no episode finished: train_trial reports no NaN values
        return math.nan
    values = curve.sort_values("env_steps")[TEAM_RETURN].to_numpy(dtype=float)
    values = values[~np.isnan(values)]
    if values.size == 0:
        return math.nan
    tail = max(1, math.ceil(fraction * values.size))
    return float(values[-tail:].mean())


def _is_nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
