"""The measurements of the throughput benchmark (``throughput.py``): the raw env rate, the
in-process learner updates, the Ray pipeline and the sampling scaling; each returns rows of
``throughput.csv``.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import io
import pstats
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import peek, push_actor_weights, rotate, timed

from rllib_hatrpo.core.allocation import ALLOCATOR_NAMES
from rllib_hatrpo.metrics import KL_TOTAL, NUM_PROPOSALS

TASKS = ("2x3", "6x1")
#: HATRPO (uniform) as it was before the vectorised sampler: RLlib's MultiAgentEnvRunner and
#: Fisher-vector products on the full batch (``fvp_subsample=1``).
UNIFORM_RLLIB_RUNNER = "uniform_rllib_runner"
METHODS = (*ALLOCATOR_NAMES, UNIFORM_RLLIB_RUNNER, "ppo")
EMA_COEFF = 0.01  # RLlib's default EMA coefficient for timers (MetricsLogger.log_time).


# --------------------------------------------------------------------------------------------
# Configs
# --------------------------------------------------------------------------------------------


def env_config(task: str) -> dict[str, Any]:
    return {"scenario": "HalfCheetah", "agent_conf": task, "agent_obsk": 1}


def make_config(method: str, task: str, args: argparse.Namespace, num_env_runners: int):
    """The method's config with the sampler settings shared by every method."""
    from ray.rllib.algorithms.ppo import PPOConfig

    from rllib_hatrpo import HATRPOConfig
    from rllib_hatrpo.envs import MaMuJoCoEnv

    if method == "ppo":
        agents = MaMuJoCoEnv(env_config(task)).possible_agents
        config = (
            PPOConfig()
            .training(num_epochs=args.ppo_epochs, minibatch_size=args.ppo_minibatch)
            .multi_agent(policies=list(agents), policy_mapping_fn=lambda aid, *a, **k: aid)
        )
    elif method == UNIFORM_RLLIB_RUNNER:
        from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

        config = (
            HATRPOConfig().env_runners(env_runner_cls=MultiAgentEnvRunner).training(fvp_subsample=1)
        )
    else:
        config = HATRPOConfig().training(kl_allocator=method)
        if args.fvp_subsample is not None:
            config = config.training(fvp_subsample=args.fvp_subsample)
    config = (
        config.environment(MaMuJoCoEnv, env_config=env_config(task))
        .env_runners(
            num_env_runners=num_env_runners,
            num_envs_per_env_runner=args.num_envs,
            rollout_fragment_length="auto",
        )
        .training(train_batch_size_per_learner=args.batch)
        .learners(num_learners=0)
        .debugging(seed=args.seed)
    )
    config.validate()
    return config


# --------------------------------------------------------------------------------------------
# 1. Raw env stepping rate
# --------------------------------------------------------------------------------------------


def raw_env_rate(task: str, num_steps: int) -> list[dict[str, Any]]:
    """Env steps/s of the wrapped PettingZoo env and of MaMuJoCoEnv.step, random actions."""
    from rllib_hatrpo.envs import MaMuJoCoEnv

    env = MaMuJoCoEnv(env_config(task))
    rng = np.random.default_rng(0)
    pool = [
        {
            aid: rng.uniform(-1.0, 1.0, env.action_spaces[aid].shape).astype(np.float32)
            for aid in env.possible_agents
        }
        for _ in range(256)
    ]
    variants: dict[str, tuple[Callable, Callable]] = {
        "env_pettingzoo": (lambda: env.env.reset(seed=0), env.env.step),
        "env_wrapper": (lambda: env.reset(seed=0), env.step),
    }
    rows = []
    for repeat, name in enumerate([*variants, *variants]):  # alternated, twice each
        reset, step = variants[name]
        reset()
        t0 = time.perf_counter()
        for i in range(num_steps):
            _, _, terminated, truncated, _ = step(pool[i % len(pool)])
            # MaMuJoCo empties its `agents` (and so these dicts) when an episode ends.
            if not truncated or all(truncated.values()) or any(terminated.values()):
                reset()
        elapsed = time.perf_counter() - t0
        rows.append(_row(task, name, "raw_env", repeat // 2, iter_s=elapsed, env_steps=num_steps))
    env.close()
    return rows


# --------------------------------------------------------------------------------------------
# 2. Learner only, in-process, on identical episodes
# --------------------------------------------------------------------------------------------


def learner_only(task: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Times ``learner.update`` of every method on one fixed batch (see ``throughput.py``)."""
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
    from ray.rllib.utils.metrics import ALL_MODULES

    rows: list[dict[str, Any]] = []
    jobs: dict[str, tuple[Any, dict, list, dict]] = {}  # method -> learner, state, eps, kwargs
    groups = {
        "hatrpo": [m for m in args.methods if m in ALLOCATOR_NAMES],
        "ppo": [m for m in args.methods if m == "ppo"],
    }
    for family, methods in groups.items():
        if not methods:
            continue
        runner = MultiAgentEnvRunner(config=make_config(methods[0], task, args, 0))
        first = None
        for method in methods:
            learner = make_config(method, task, args, 0).build_learner(spaces=runner.get_spaces())
            if first is None:
                first = learner
            else:  # identical starting weights for every allocator
                learner.module.set_state(copy.deepcopy(first.module.get_state()))
            kwargs = {}
            if method == "ppo":
                kwargs = {"num_epochs": args.ppo_epochs, "minibatch_size": args.ppo_minibatch}
            # Deep copies: torch get_state()/set_state() may share memory with the parameters.
            jobs[method] = (learner, copy.deepcopy(learner.get_state()), [], kwargs)
        push_actor_weights(first, runner)
        runner.sample(num_timesteps=args.batch)  # warm-up: env resets, first forward passes
        t0 = time.perf_counter()
        episodes = runner.sample(num_timesteps=args.batch)
        elapsed = time.perf_counter() - t0
        env_steps = sum(len(e) for e in episodes)
        rows.append(
            _row(
                task,
                f"sampler_{family}",
                "inprocess_sampler",
                0,
                iter_s=elapsed,
                env_steps=env_steps,
            )
        )
        for method in methods:
            jobs[method][2].extend(episodes)
        runner.stop()

    order = [m for m in args.methods if m in jobs]
    for method in order:  # warm-up update per learner (first-call costs), not timed
        learner, state, episodes, kwargs = jobs[method]
        learner.set_state(copy.deepcopy(state))
        learner.update(episodes=copy.deepcopy(episodes), timesteps={}, **kwargs)
    for repeat in range(args.learner_repeats):
        for position, method in enumerate(rotate(order, repeat)):
            learner, state, episodes, kwargs = jobs[method]
            learner.set_state(copy.deepcopy(state))
            batch = copy.deepcopy(episodes)
            t0 = time.perf_counter()
            results = learner.update(episodes=batch, timesteps={}, **kwargs)
            elapsed = time.perf_counter() - t0
            overall = results.get(ALL_MODULES, {})
            rows.append(
                _row(
                    task,
                    method,
                    "learner_only",
                    repeat,
                    order_position=position,
                    learner_s=elapsed,
                    env_steps=sum(len(e) for e in episodes),
                    num_proposals=peek(overall.get(NUM_PROPOSALS)),
                    kl_total=peek(overall.get(KL_TOTAL)),
                )
            )
    if args.profile:
        for method in order:
            learner, state, episodes, kwargs = jobs[method]
            learner.set_state(copy.deepcopy(state))
            batch = copy.deepcopy(episodes)
            _profile_update(learner, batch, kwargs, args.out / f"profile_{task}_{method}.txt")
    return rows


def _profile_update(learner: Any, episodes: list, kwargs: dict, path: Path) -> None:
    """cProfile of one ``learner.update``; writes the top functions by cumulative and own time."""
    profiler = cProfile.Profile()
    t0 = time.perf_counter()
    profiler.enable()
    learner.update(episodes=episodes, timesteps={}, **kwargs)
    profiler.disable()
    elapsed = time.perf_counter() - t0
    text = io.StringIO()
    text.write(f"one learner.update, {elapsed:.3f} s under cProfile\n\n")
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("cumulative").print_stats(35)
    stats.sort_stats("tottime").print_stats(25)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.getvalue())
    print(f"  profile written to {path}", flush=True)


# --------------------------------------------------------------------------------------------
# 3. The whole pipeline: algo.train() of Ray-built algorithms, interleaved
# --------------------------------------------------------------------------------------------


def pipeline(task: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Builds every method for ``task``, warms each up, then times round-robin iterations."""
    from ray.rllib.utils.metrics import (
        ALL_MODULES,
        ENV_RUNNER_SAMPLING_TIMER,
        LEARNER_RESULTS,
        LEARNER_UPDATE_TIMER,
        SYNCH_WORKER_WEIGHTS_TIMER,
    )
    from ray.tune.result import TIME_THIS_ITER_S

    algos: dict[str, tuple[Any, list[float]]] = {}
    for method in args.methods:
        t0 = time.perf_counter()
        algo = make_config(method, task, args, args.pipeline_runners).build_algo()
        update_times: list[float] = []
        # Wall time of each learner update, measured around the call on this instance only.
        algo.learner_group.update = timed(algo.learner_group.update, update_times)
        algos[method] = (algo, update_times)
        print(f"  built {method} in {time.perf_counter() - t0:.1f} s", flush=True)
    last = {}
    for method, (algo, _) in algos.items():
        last[method] = algo.train()  # warm-up, not timed
    rows = []
    for repeat in range(args.iters):
        for position, method in enumerate(rotate(list(algos), repeat)):
            algo, update_times = algos[method]
            n_updates = len(update_times)
            t0 = time.perf_counter()
            result = algo.train()
            iter_s = time.perf_counter() - t0
            prev, last[method] = last[method], result
            learner_s = sum(update_times[n_updates:])
            env_steps = _env_steps_sampled(result) - _env_steps_sampled(prev)
            sampling_s = _timer_value(prev, result, ENV_RUNNER_SAMPLING_TIMER)
            overall = result.get(LEARNER_RESULTS, {}).get(ALL_MODULES, {})
            rows.append(
                _row(
                    task,
                    method,
                    "pipeline",
                    repeat,
                    order_position=position,
                    iter_s=iter_s,
                    time_this_iter_s=float(result[TIME_THIS_ITER_S]),
                    env_steps=env_steps,
                    learner_s=learner_s,
                    learner_timer_s=_timer_value(prev, result, LEARNER_UPDATE_TIMER),
                    sampling_s=sampling_s,
                    sampling_env_steps_per_s=env_steps / sampling_s,
                    sync_s=_timer_value(prev, result, SYNCH_WORKER_WEIGHTS_TIMER),
                    num_proposals=peek(overall.get(NUM_PROPOSALS)),
                )
            )
            print(
                f"  {task} {method:>7} iter {repeat}: {iter_s:6.2f} s, {env_steps:.0f} steps, "
                f"sampling {sampling_s:5.2f} s, learner {learner_s:5.2f} s",
                flush=True,
            )
    for algo, _ in algos.values():
        algo.stop()
    return rows


# --------------------------------------------------------------------------------------------
# 4. Sampling throughput against the number of EnvRunners
# --------------------------------------------------------------------------------------------


def scaling(task: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Env steps/s of sampling alone (HATRPO actors) with 1, 2, ... remote EnvRunners.

    For each count in ``--runners``: a uniform-HATRPO algorithm with that many EnvRunners ×
    ``--num-envs`` envs samples ``--batch`` env steps through RLlib's own
    ``synchronous_parallel_sample`` (as ``training_step`` does), once untimed, then
    ``--iters`` timed times. No learning, so the figure is the sampler's ceiling for that
    count on this machine.
    """
    from ray.rllib.execution.rollout_ops import synchronous_parallel_sample

    rows = []
    for runners in args.runners:
        algo = make_config("uniform", task, args, runners).build_algo()
        group = algo.env_runner_group
        for repeat in range(args.iters + 1):
            t0 = time.perf_counter()
            episodes = synchronous_parallel_sample(
                worker_set=group, max_env_steps=args.batch, concat=True, _uses_new_env_runners=True
            )
            elapsed = time.perf_counter() - t0
            steps = sum(len(e) for e in episodes)
            if repeat:  # the first call is the warm-up
                rows.append(
                    _row(
                        task,
                        f"{runners} runners",
                        "scaling",
                        repeat - 1,
                        iter_s=elapsed,
                        env_steps=steps,
                        env_runners=runners,
                    )
                )
        print(
            f"  {task} {runners} EnvRunner(s) × {args.num_envs} envs: "
            f"{np.median([r['env_steps_per_s'] for r in rows[-args.iters :]]):.0f} steps/s",
            flush=True,
        )
        algo.stop()
    return rows


def _env_steps_sampled(result: dict) -> float:
    """The EnvRunners' lifetime count of sampled env steps in an iteration's result."""
    from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME

    return float(result[ENV_RUNNER_RESULTS][NUM_ENV_STEPS_SAMPLED_LIFETIME])


def _timer_value(prev: dict, result: dict, key: str) -> float:
    """This iteration's value of an RLlib timer, recovered exactly from its EMA before/after."""
    from ray.rllib.utils.metrics import TIMERS

    before, after = prev[TIMERS].get(key), result[TIMERS].get(key)
    if before is None or after is None:
        return float("nan")
    return (float(after) - (1.0 - EMA_COEFF) * float(before)) / EMA_COEFF


def _row(task: str, method: str, phase: str, repeat: int, **values: Any) -> dict[str, Any]:
    """One row of throughput.csv, with env_steps_per_s when env_steps and iter_s are given."""
    row = {"task": task, "method": method, "phase": phase, "repeat": repeat, **values}
    if "env_steps" in row and "iter_s" in row:
        row["env_steps_per_s"] = row["env_steps"] / row["iter_s"]
    return row
