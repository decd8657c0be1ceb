"""Throughput benchmark: HATRPO (uniform), HATRPO-W (kkt), HATRPO-G (greedy) and RLlib's PPO
on Multi-Agent MuJoCo HalfCheetah 2x3 and 6x1, side by side in one run (benchmarks.md,
"How to measure").

How to run
----------
From the repository root::

    python benchmarks/throughput.py                          # defaults: ~6-10 min on 2 cores
    python benchmarks/throughput.py --tasks 2x3 --methods uniform ppo --iters 5
    python benchmarks/throughput.py --learner-only --profile  # in-process learner part only

Defaults: tasks 2x3 and 6x1 (``agent_obsk`` 1), methods uniform, kkt, greedy and ppo, 3 timed
iterations after 1 warm-up, ``train_batch_size_per_learner`` 2,000, 1 remote EnvRunner × 4
envs, ``rollout_fragment_length="auto"``, a local learner (``num_learners=0``), seed 0, one
torch thread in the driver. Outputs in ``--out`` (default ``results/throughput/``):
``throughput.csv`` (one row per measurement), ``summary.md`` (versions, CPU count, load,
timestamp, the table) and, with ``--profile``, ``profile_<task>_<allocator>.txt``. The table
is printed last.

What it measures
----------------
Per task, in this order:

1. **Raw env rate** (the ceiling): ``MaMuJoCoEnv.step`` with uniform random actions, no
   policy, in the driver process; also the wrapped PettingZoo env alone (``env.env.step``).
2. **Learner only, in-process** (the cleanest allocator comparison): one
   ``MultiAgentEnvRunner(config=cfg)`` (no Ray cluster) samples ``--batch`` env steps once;
   every method's learner (``cfg.build_learner(spaces=runner.get_spaces())``, same seed, so
   the HATRPO actors start from identical weights) then runs, after one untimed warm-up call,
   ``learner.update(episodes=copy.deepcopy(episodes), timesteps={})`` ``--learner-repeats``
   times on exactly these episodes, its state restored before every repeat so that each repeat
   does the same work; methods are interleaved round-robin. PPO's learner gets its own
   runner's batch of the same size and ``num_epochs``/``minibatch_size`` as in the pipeline.
   Reported: the median wall time of ``update`` (learner connector incl. GAE + update), and
   the allocators' ``num_proposals`` (trial TRPO steps: uniform and kkt n, greedy
   n(n+1)/2).
3. **Pipeline** (``algo.train()`` of a Ray-built algorithm): all methods of the task are built
   (one remote EnvRunner each; they idle while another method trains), each runs 1 untimed
   warm-up iteration, then ``--iters`` timed iterations, round-robin over methods with the
   starting method rotated every round, so machine noise hits all methods alike. Per
   iteration:

   - ``iter_s``: wall time of ``algo.train()`` (``time.perf_counter``; ``time_this_iter_s``
     is kept next to it as a cross-check);
   - ``env_steps``: the increase of ``result["env_runners"]["num_env_steps_sampled_lifetime"]``
     (never PPO's trained-steps counter, which counts every minibatch pass: pitfall 21);
   - ``env_steps_per_s`` = env_steps / iter_s;
   - ``learner_s``: wall time of ``algo.learner_group.update`` (wrapped on the instance by
     this script, ``time.perf_counter``);
   - ``sampling_s`` and ``sync_s``: this iteration's value of RLlib's own
     ``env_runner_sampling_timer`` and ``synch_weights`` timers. RLlib logs them as an EMA
     with coefficient α = 0.01 (``ray/rllib/utils/metrics/metrics_logger.py``), so the value
     of one iteration is recovered exactly as (E_t − (1 − α)·E_{t−1}) / α from the EMAs
     before and after the call. ``learner_timer_s`` is the same inversion for
     ``learner_update_timer``; the summary reports its largest deviation from ``learner_s``
     as the check that the inversion is right.

Ratios: env steps/s and iteration time of each method over PPO's (pipeline medians), the
pipeline learner time over PPO's, and the in-process learner time of each allocator over
uniform's.

Settings common to all methods: the same env class and env config, sampler settings, seed and
batch size. HATRPO runs its package defaults (actor and critic MLP [128, 128], 5 critic
epochs, CG 10 iterations, 10 line-search steps); PPO runs RLlib's defaults (MLP [256, 256],
separate value network) except ``num_epochs`` × ``minibatch_size`` (``--ppo-epochs``,
``--ppo-minibatch``; 5 × 500 by default, as in the design notes), printed in the output.

Caveats
-------
- The machine is small and shared: other jobs may run beside this one. Absolute times are
  noise; the ratios measured side by side in one run are the figure, and they come from one
  run with few iterations (medians of ``--iters`` and ``--learner-repeats`` values). The
  summary records the load average before and after.
- One torch thread in the driver (``--torch-threads``). On 2 busy cores, torch's default of
  one intra-op thread per core made every learner update 20-40× slower (oversubscribed
  thread pool); Ray already gives each EnvRunner actor one thread.
- Episodes last 1,000 steps, so 2,000-step iterations over 4 envs end episodes only every
  other iteration; this script reports no returns, only times.
"""

from __future__ import annotations

import argparse
import copy
import cProfile
import functools
import importlib.metadata
import io
import logging
import os
import platform
import pstats
import sys
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

TASKS = ("2x3", "6x1")
ALLOCATORS = ("uniform", "kkt", "greedy")
METHODS = (*ALLOCATORS, "ppo")
EMA_COEFF = 0.01  # RLlib's default EMA coefficient for timers (MetricsLogger.log_time).
SAMPLING_TIMER = "env_runner_sampling_timer"
LEARNER_TIMER = "learner_update_timer"
SYNC_TIMER = "synch_weights"


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
            .multi_agent(policies=set(agents), policy_mapping_fn=lambda aid, *a, **k: aid)
        )
    else:
        config = HATRPOConfig().training(kl_allocator=method)
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
    """Times ``learner.update`` of every method on one fixed batch (see the module docstring)."""
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    rows: list[dict[str, Any]] = []
    jobs: dict[str, tuple[Any, dict, list, dict]] = {}  # method -> learner, state, eps, kwargs
    groups = {
        "hatrpo": [m for m in args.methods if m in ALLOCATORS],
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
        _push_actor_weights(first, runner)
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
        for position, method in enumerate(_rotate(order, repeat)):
            learner, state, episodes, kwargs = jobs[method]
            learner.set_state(copy.deepcopy(state))
            batch = copy.deepcopy(episodes)
            t0 = time.perf_counter()
            results = learner.update(episodes=batch, timesteps={}, **kwargs)
            elapsed = time.perf_counter() - t0
            overall = results.get("__all_modules__", {})
            rows.append(
                _row(
                    task,
                    method,
                    "learner_only",
                    repeat,
                    order_position=position,
                    learner_s=elapsed,
                    env_steps=sum(len(e) for e in episodes),
                    num_proposals=_peek(overall.get("num_proposals")),
                    kl_total=_peek(overall.get("kl_total")),
                )
            )
    if args.profile:
        for method in order:
            learner, state, episodes, kwargs = jobs[method]
            learner.set_state(copy.deepcopy(state))
            batch = copy.deepcopy(episodes)
            _profile_update(learner, batch, kwargs, args.out / f"profile_{task}_{method}.txt")
    return rows


def _push_actor_weights(learner: Any, runner: Any) -> None:
    """The learner's actor weights into the runner, as EnvRunnerGroup.sync_weights does."""
    from ray.rllib.core import COMPONENT_RL_MODULE

    from rllib_hatrpo.default_hatrpo_rl_module import SHARED_CRITIC_ID

    components = [
        f"{COMPONENT_RL_MODULE}/{mid}" for mid in learner.module.keys() if mid != SHARED_CRITIC_ID
    ]
    state = learner.get_state(components=components, inference_only=True)
    runner.set_state({COMPONENT_RL_MODULE: state[COMPONENT_RL_MODULE]})


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
    algos: dict[str, tuple[Any, list[float]]] = {}
    for method in args.methods:
        t0 = time.perf_counter()
        algo = make_config(method, task, args, 1).build_algo()
        update_times: list[float] = []
        # Wall time of each learner update, measured around the call on this instance only.
        algo.learner_group.update = _timed(algo.learner_group.update, update_times)
        algos[method] = (algo, update_times)
        print(f"  built {method} in {time.perf_counter() - t0:.1f} s", flush=True)
    last = {}
    for method, (algo, _) in algos.items():
        last[method] = algo.train()  # warm-up, not timed
    rows = []
    for repeat in range(args.iters):
        for position, method in enumerate(_rotate(list(algos), repeat)):
            algo, update_times = algos[method]
            n_updates = len(update_times)
            t0 = time.perf_counter()
            result = algo.train()
            iter_s = time.perf_counter() - t0
            prev, last[method] = last[method], result
            learner_s = sum(update_times[n_updates:])
            env_steps = _env_steps_sampled(result) - _env_steps_sampled(prev)
            sampling_s = _timer_value(prev, result, SAMPLING_TIMER)
            overall = result.get("learners", {}).get("__all_modules__", {})
            rows.append(
                _row(
                    task,
                    method,
                    "pipeline",
                    repeat,
                    order_position=position,
                    iter_s=iter_s,
                    time_this_iter_s=float(result["time_this_iter_s"]),
                    env_steps=env_steps,
                    learner_s=learner_s,
                    learner_timer_s=_timer_value(prev, result, LEARNER_TIMER),
                    sampling_s=sampling_s,
                    sampling_env_steps_per_s=env_steps / sampling_s,
                    sync_s=_timer_value(prev, result, SYNC_TIMER),
                    num_proposals=_peek(overall.get("num_proposals")),
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


def scaling_table(df: pd.DataFrame, tasks: list[str]) -> str:
    hits = df[df.phase == "scaling"]
    if hits.empty:
        return "(not measured)"
    counts = sorted(hits.env_runners.unique())
    lines = [
        "| task | " + " | ".join(f"{int(n)} EnvRunner(s)" for n in counts) + " |",
        "|---|" + "---|" * len(counts),
    ]
    for task in tasks:
        base = hits[(hits.task == task) & (hits.env_runners == counts[0])].env_steps_per_s.median()
        cells = []
        for n in counts:
            rate = hits[(hits.task == task) & (hits.env_runners == n)].env_steps_per_s.median()
            cells.append(f"{rate:.0f} (×{rate / base:.2f})")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _timed(fn: Callable, sink: list[float]) -> Callable:
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            sink.append(time.perf_counter() - t0)

    return wrapper


def _env_steps_sampled(result: dict) -> float:
    return float(result["env_runners"]["num_env_steps_sampled_lifetime"])


def _timer_value(prev: dict, result: dict, key: str) -> float:
    """This iteration's value of an RLlib timer, recovered exactly from its EMA before/after."""
    before, after = prev["timers"].get(key), result["timers"].get(key)
    if before is None or after is None:
        return float("nan")
    return (float(after) - (1.0 - EMA_COEFF) * float(before)) / EMA_COEFF


# --------------------------------------------------------------------------------------------
# Helpers, summary, output
# --------------------------------------------------------------------------------------------


def _row(task: str, method: str, phase: str, repeat: int, **values: Any) -> dict[str, Any]:
    row = {"task": task, "method": method, "phase": phase, "repeat": repeat, **values}
    if "env_steps" in row and "iter_s" in row:
        row["env_steps_per_s"] = row["env_steps"] / row["iter_s"]
    return row


def _rotate(items: list, k: int) -> list:
    k %= len(items)
    return items[k:] + items[:k]


def _peek(value: Any) -> float:
    if value is None:
        return float("nan")
    return float(value.peek() if hasattr(value, "peek") else value)


def summarise(df: pd.DataFrame, tasks: list[str], methods: list[str]) -> pd.DataFrame:
    """One row per task × method: pipeline and learner-only medians and the ratios."""
    out = []
    for task in tasks:
        pipe = df[(df.task == task) & (df.phase == "pipeline")].groupby("method")
        lo = df[(df.task == task) & (df.phase == "learner_only")].groupby("method")
        for method in methods:
            row: dict[str, Any] = {"task": task, "method": method}
            if method in pipe.groups:
                g = pipe.get_group(method)
                for col in (
                    "iter_s",
                    "env_steps_per_s",
                    "learner_s",
                    "sampling_s",
                    "sync_s",
                    "sampling_env_steps_per_s",
                    "num_proposals",
                ):
                    row[col] = g[col].median()
            if method in lo.groups:
                row["learner_only_s"] = lo.get_group(method)["learner_s"].median()
                row["learner_only_proposals"] = lo.get_group(method)["num_proposals"].median()
            out.append(row)
    summary = pd.DataFrame(out)
    for col in ("iter_s", "env_steps_per_s", "learner_s", "learner_only_s"):
        if col not in summary:
            summary[col] = np.nan
    for task in tasks:
        mask = summary.task == task
        ref = summary[mask].set_index("method")
        if "ppo" in ref.index:
            summary.loc[mask, "steps_per_s_x_ppo"] = (
                summary.loc[mask, "env_steps_per_s"] / ref.loc["ppo", "env_steps_per_s"]
            )
            summary.loc[mask, "iter_s_x_ppo"] = (
                summary.loc[mask, "iter_s"] / ref.loc["ppo", "iter_s"]
            )
            summary.loc[mask, "learner_s_x_ppo"] = (
                summary.loc[mask, "learner_s"] / ref.loc["ppo", "learner_s"]
            )
        if "uniform" in ref.index:
            summary.loc[mask, "learner_only_x_uniform"] = (
                summary.loc[mask, "learner_only_s"] / ref.loc["uniform", "learner_only_s"]
            )
    return summary


def markdown_table(summary: pd.DataFrame) -> str:
    cols = [
        ("task", "task", "{}"),
        ("method", "method", "{}"),
        ("iter_s", "iter s", "{:.2f}"),
        ("env_steps_per_s", "env steps/s", "{:.0f}"),
        ("steps_per_s_x_ppo", "steps/s ×PPO", "{:.2f}"),
        ("iter_s_x_ppo", "iter ×PPO", "{:.2f}"),
        ("sampling_s", "sampling s", "{:.2f}"),
        ("learner_s", "learner s", "{:.3f}"),
        ("learner_s_x_ppo", "learner ×PPO", "{:.2f}"),
        ("learner_only_s", "learner-only s", "{:.3f}"),
        ("learner_only_x_uniform", "learner-only ×uniform", "{:.2f}"),
        ("learner_only_proposals", "proposals", "{:.0f}"),
    ]
    cols = [c for c in cols if c[0] in summary]
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for _, row in summary.iterrows():
        cells = []
        for key, _, fmt in cols:
            value = row.get(key)
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            cells.append("–" if missing else fmt.format(value))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ceilings_table(df: pd.DataFrame, tasks: list[str]) -> str:
    names = {
        "env_pettingzoo": "PettingZoo env.step",
        "env_wrapper": "MaMuJoCoEnv.step",
        "sampler_hatrpo": "in-process sampler (HATRPO actors)",
        "sampler_ppo": "in-process sampler (PPO modules)",
    }
    lines = ["| task | " + " | ".join(names.values()) + " |", "|---|" + "---|" * len(names)]
    for task in tasks:
        cells = []
        for method in names:
            hit = df[(df.task == task) & (df.method == method)]["env_steps_per_s"]
            cells.append(f"{hit.median():.0f}" if len(hit) else "–")
        lines.append(f"| {task} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def environment_info() -> dict[str, str]:
    import mujoco
    import ray
    import torch

    def version(dist: str) -> str:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            return "not installed"

    return {
        "ray": ray.__version__,
        "torch": torch.__version__,
        "gymnasium": version("gymnasium"),
        "gymnasium-robotics": version("gymnasium-robotics"),
        "mujoco": mujoco.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": str(os.cpu_count()),
        "torch threads (driver)": str(torch.get_num_threads()),
    }


def write_summary(path: Path, args, summary, df, info, loads, wall_s) -> str:
    table = markdown_table(summary)
    pipe = df[df.phase == "pipeline"]
    check = (pipe.learner_timer_s - pipe.learner_s).abs().max() if len(pipe) else float("nan")
    text = f"""# Throughput: HATRPO / HATRPO-W / HATRPO-G vs RLlib PPO (MaMuJoCo HalfCheetah)

Generated {datetime.now(timezone.utc).isoformat(timespec="seconds")} by
`python benchmarks/throughput.py {" ".join(sys.argv[1:])}`; total wall time {wall_s:.0f} s.

Versions: {", ".join(f"{k} {v}" for k, v in info.items())}.
Load average (1/5/15 min) at start {loads[0]}, at end {loads[1]}: **a shared, noisy machine**;
compare the ratios, not the absolute times. All figures come from this one run.

Settings (all methods): 1 remote EnvRunner × {args.num_envs} envs,
`train_batch_size_per_learner={args.batch}`, `rollout_fragment_length="auto"`, local learner,
seed {args.seed}, agent_obsk 1; 1 untimed warm-up then {args.iters} timed iterations per
method, interleaved round-robin. PPO: RLlib defaults, `num_epochs={args.ppo_epochs}`,
`minibatch_size={args.ppo_minibatch}`, one module per agent. HATRPO: package defaults.
Learner-only: median of {args.learner_repeats} in-process `learner.update` calls on one fixed
batch per task.

Columns: medians; *iter s* = wall time of `algo.train()`; *env steps/s* = env steps sampled
(diff of `num_env_steps_sampled_lifetime`) / iter s; *sampling s* = RLlib's sampling timer,
this iteration's value (EMA inverted); *learner s* = wall time of `learner_group.update`;
*learner-only s* = in-process `learner.update` on identical episodes; *proposals* = trial TRPO
steps per update. Check of the EMA inversion: largest |learner timer − measured learner
time| = {check:.4f} s.

{table}

Ceilings (env steps/s, no learning):

{ceilings_table(df, list(args.tasks))}

Sampling alone (`synchronous_parallel_sample` of {args.batch} env steps, HATRPO actors)
against the number of remote EnvRunners × {args.num_envs} envs, env steps/s (× the first):

{scaling_table(df, list(args.tasks))}
"""
    path.write_text(text)
    return table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per method")
    parser.add_argument("--batch", type=int, default=2000, help="train_batch_size_per_learner")
    parser.add_argument("--num-envs", type=int, default=4, help="envs per EnvRunner")
    parser.add_argument("--out", type=Path, default=Path("results/throughput"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppo-epochs", type=int, default=5)
    parser.add_argument("--ppo-minibatch", type=int, default=500)
    parser.add_argument("--learner-repeats", type=int, default=5)
    parser.add_argument("--env-steps", type=int, default=5000, help="raw env rate: steps")
    parser.add_argument("--torch-threads", type=int, default=1, help="driver torch threads")
    parser.add_argument("--learner-only", action="store_true", help="skip the Ray pipeline")
    parser.add_argument("--profile", action="store_true", help="cProfile one learner update")
    parser.add_argument(
        "--runners",
        type=int,
        nargs="*",
        default=[1, 2, 4],
        help="EnvRunner counts of the sampling-scaling phase (none: skip it)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # no ~/.ray/auth_token side effect
    warnings.filterwarnings("ignore")
    for name in ("ray", "ray.rllib", "rllib_hatrpo", "gymnasium_robotics"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import torch

    torch.set_num_threads(args.torch_threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start, load_start = time.perf_counter(), os.getloadavg()
    rows: list[dict[str, Any]] = []
    for task in args.tasks:
        print(f"[{task}] raw env rate and in-process learner updates", flush=True)
        rows += raw_env_rate(task, args.env_steps)
        rows += learner_only(task, args)
    if not args.learner_only:
        import ray

        ray.init(
            # Logical CPUs: one EnvRunner per method stays alive; the scaling phase needs one
            # per EnvRunner plus the driver.
            num_cpus=max(len(args.methods), *args.runners, 0) + 1,
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
        )
        for task in args.tasks:
            print(f"[{task}] pipeline: {', '.join(args.methods)}", flush=True)
            rows += pipeline(task, args)
        for task in args.tasks if args.runners else []:
            print(f"[{task}] sampling with {args.runners} EnvRunners", flush=True)
            rows += scaling(task, args)
        ray.shutdown()
    df = pd.DataFrame(rows)
    df.to_csv(args.out / "throughput.csv", index=False)
    summary = summarise(df, list(args.tasks), list(args.methods))
    loads = (tuple(round(x, 2) for x in load_start), tuple(round(x, 2) for x in os.getloadavg()))
    table = write_summary(
        args.out / "summary.md",
        args,
        summary,
        df,
        environment_info(),
        loads,
        time.perf_counter() - start,
    )
    print(f"\nCeilings (env steps/s):\n{ceilings_table(df, list(args.tasks))}")
    print(f"\nSampling vs EnvRunners (env steps/s):\n{scaling_table(df, list(args.tasks))}")
    print(
        f"\nWrote {args.out / 'throughput.csv'} and {args.out / 'summary.md'}; "
        f"load average {loads[0]} -> {loads[1]}. Shared machine: compare ratios.\n"
    )
    print(table)


if __name__ == "__main__":
    main()
