"""Training under Ray Tune: one trial = one algorithm trained to an env-step budget, resumable.

A Tune trial here is a *function* trainable, :func:`train_trial`, that builds any RLlib
algorithm config (HATRPO with any allocator, or RLlib's PPO for comparison), restores it from
the trial's last checkpoint when Tune resumes the trial, and reports one flat row per iteration
(:func:`rllib_hatrpo.experiments.records.flatten_result`: ``env_steps``, ``team_return``, the
allocation metrics, ...). It trains with the loop of ``hatrpo train``
(:func:`rllib_hatrpo.experiments.loop.train_iterations`). The same trainable serves the tuned
examples, the comparison benchmark and ``hatrpo tune``, so their Tune folders all read back
with :func:`read_trials`.

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
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from rllib_hatrpo.experiments.records import (
    METHOD,
    SEED,
    TEAM_RETURN,
    TRAINING_ITERATION,
    TRIAL,
)

__all__ = [
    "METHOD",
    "SEED",
    "TEAM_RETURN",
    "TRIAL",
    "experiment_exists",
    "make_trainable",
    "read_trials",
    "restore_or_create_tuner",
    "train_trial",
]


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
    and at the end. The loop, saving and restoring are those of ``hatrpo train``
    (:func:`~rllib_hatrpo.experiments.loop.train_iterations`;
    :func:`~rllib_hatrpo.experiments.checkpoints.save_checkpoint_atomically`, with a manifest
    and no non-finite module state;
    :func:`~rllib_hatrpo.experiments.checkpoints.restore_checkpoint`): a checkpoint that is
    damaged, incomplete or cannot be restored raises a ``CheckpointError`` naming the file, so
    the trial errors rather than silently starting afresh or continuing with missing parts.
    Each report is the iteration's ``metrics.csv`` row without its NaN values. A trial
    restored at or past its budget (a finished trial resumed for a raised stop that it had
    reached already, on its other criterion) trains and reports nothing.

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
    from rllib_hatrpo.experiments.loop import StopCriteria, finite_values, train_iterations

    stop = StopCriteria(iters=iterations, timesteps=env_steps)
    if stop.is_empty():
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
            if _reached(algo, stop):
                return  # a finished trial resumed by an extension it does not need
        for step in train_iterations(algo, stop, checkpoint_every=checkpoint_every):
            row = finite_values(step.row)
            if step.stop_reason or step.checkpoint_due:
                with tempfile.TemporaryDirectory() as tmp:
                    path = save_checkpoint_atomically(algo, Path(tmp) / "checkpoint")
                    tune.report(row, checkpoint=tune.Checkpoint.from_directory(path))
            else:
                tune.report(row)
    finally:
        algo.stop()


def _reached(algo: Any, stop: Any) -> bool:
    """Whether a restored ``algo`` has reached ``stop``'s iterations or env steps already."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    steps = algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
    return (stop.iters is not None and algo.iteration >= stop.iters) or (
        stop.timesteps is not None and steps >= stop.timesteps
    )


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


def experiment_path(storage: str, name: str) -> str:
    """The folder (or URI) of the Tune experiment ``name`` under ``storage``."""
    return f"{storage.rstrip('/')}/{name}"


def experiment_exists(storage: str, name: str) -> bool:
    """Whether ``storage/name`` holds a Tune experiment that can be restored."""
    from ray import tune

    return tune.Tuner.can_restore(experiment_path(storage, name))


def restore_or_create_tuner(
    storage: str,
    name: str,
    trainable: Any,
    *,
    max_failures: int = 0,
    label: str = "the Tune experiment",
    log: Callable[[str], None] | None = None,
    resume_finished: bool = False,
    **tuner_kwargs: Any,
) -> Any:
    """The Tune experiment ``storage/name``: restored if it exists, else a new ``Tuner``.

    A restored experiment keeps its finished trials and continues unfinished and errored ones
    from their last checkpoints (its original parameters and settings are kept: callers
    check the plan first, :func:`rllib_hatrpo.experiments.plans.check_same_plan`). A new one
    keeps each trial's latest checkpoint only.

    With ``resume_finished``, finished (``TERMINATED``) trials continue too, from their last
    checkpoints: how a larger budget, bound into ``trainable``, extends an experiment. Tune's
    ``Tuner.restore`` flags cannot resume finished trials; its ``ResumeConfig(finished=RESUME)``
    (passed as ``_resume_config``, marked experimental in Ray 2.x) does.

    Args:
        storage: Tune's storage path (a local folder or a URI).
        name: The experiment's name (its folder under ``storage``).
        trainable: The trainable (e.g. from :func:`make_trainable`).
        max_failures: Retries of a failed trial from its last checkpoint.
        label: What the "resuming ..." message calls the experiment.
        log: Called with that message when the experiment is restored (default: no message).
        resume_finished: Continue the finished trials as well (see above).
        **tuner_kwargs: ``param_space``, ``tune_config`` ... of a new ``tune.Tuner``.
    """
    from ray import tune

    path = experiment_path(storage, name)
    if tune.Tuner.can_restore(path):
        resume = tune.ResumeConfig.ResumeType.RESUME
        kept = "continue to the new stop" if resume_finished else "are kept"
        if log is not None:
            log(f"resuming {label} in {path}: finished trials {kept}")
        finished = resume if resume_finished else tune.ResumeConfig.ResumeType.SKIP
        return tune.Tuner.restore(
            path,
            trainable=trainable,
            _resume_config=tune.ResumeConfig(finished=finished, unfinished=resume, errored=resume),
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
    A trial restored from a checkpoint reports again the iterations it had reported after that
    checkpoint, and Tune appends them to ``progress.csv``: the rows of the restored run replace
    the earlier ones, so each trial has one row per ``training_iteration``.
    """
    frames = []
    for params_file in sorted(Path(experiment).glob("*/params.json")):
        progress = params_file.with_name("progress.csv")
        if not progress.is_file() or progress.stat().st_size == 0:
            continue
        frame = pd.read_csv(progress)
        if frame.empty:
            continue
        if TRAINING_ITERATION in frame:
            frame = frame.drop_duplicates(TRAINING_ITERATION, keep="last")
            frame = frame.sort_values(TRAINING_ITERATION, kind="stable", ignore_index=True)
        params = json.loads(params_file.read_text())
        for key, value in params.items():
            if isinstance(value, str | int | float | bool):
                frame[key] = value
        frame[TRIAL] = params_file.parent.name
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
