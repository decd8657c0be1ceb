"""MaMuJoCo vector-env benchmark: env steps per second of N HalfCheetah envs, three ways.

How to run
----------
From the repository root (one heavy process on the machine, one BLAS thread)::

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 python benchmarks/mamujoco_vector.py
    python benchmarks/mamujoco_vector.py --tasks 6x1 --num-envs 16 --steps 500 --repeats 5

Defaults: tasks 2x3 and 6x1 (``agent_obsk`` 1), N = 16 envs, 400 lockstep steps (N × 400
env steps) per measurement, 3 repeats. Outputs in ``--out`` (default
``results/mamujoco_vector/``): ``rows.csv`` (one row per measurement) and ``summary.md``
(the table with the load average); the table is printed last.

What it measures
----------------
Per task, the same precomputed uniform random actions (seed 0) go to:

1. ``gymnasium``: N ``gymnasium.make("HalfCheetah-v5")`` envs (what MaMuJoCo steps inside),
   stepped one after another with the joint actions; no per-agent work (the ceiling).
2. ``sync``: ``SyncTeamVectorEnv([MaMuJoCoEnv(cfg)] * N)``, the reference path.
3. ``fast``: ``MaMuJoCoVectorEnv(cfg, N)``, the vectorised path.

Envs whose episode ended are reset (unseeded) before the next step, as the vectorised
EnvRunner does. Variants are interleaved (round-robin, the first rotated every repeat) so
that load changes hit all of them alike. Reported per (task, variant): the median env steps
per CPU-second (``time.process_time``) and per wall-second, and the ratio to ``gymnasium``;
``os.getloadavg()`` is recorded before and after.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from _common import markdown_table, quiet_logs, rotate

VARIANTS = ("gymnasium", "sync", "fast")
ACTION_POOL = 64  # Distinct precomputed action sets, cycled.


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["2x3", "6x1"], help="HalfCheetah splits")
    parser.add_argument("--num-envs", type=int, default=16, help="N envs stepped in lockstep")
    parser.add_argument("--steps", type=int, default=400, help="lockstep steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per variant")
    parser.add_argument("--out", type=Path, default=Path("results/mamujoco_vector"))
    return parser.parse_args()


def _stepper(variant: str, task: str, num_envs: int) -> tuple[Callable[[int], None], Callable]:
    """Returns ``step(i)`` (one lockstep step with action set i) and ``close()``."""
    import gymnasium

    from rllib_hatrpo.envs.mamujoco import MaMuJoCoEnv
    from rllib_hatrpo.envs.mamujoco_vector import MaMuJoCoVectorEnv
    from rllib_hatrpo.envs.vector import SyncTeamVectorEnv

    cfg = {"scenario": "HalfCheetah", "agent_conf": task, "agent_obsk": 1}
    probe = MaMuJoCoEnv(cfg)
    agents, spaces = probe.possible_agents, probe.action_spaces
    probe.close()
    rng = np.random.default_rng(0)
    pool = [
        {aid: rng.uniform(-1.0, 1.0, (num_envs, *spaces[aid].shape)) for aid in agents}
        for _ in range(ACTION_POOL)
    ]
    pool = [{aid: a.astype(np.float32) for aid, a in actions.items()} for actions in pool]
    if variant == "gymnasium":
        envs = [gymnasium.make("HalfCheetah-v5") for _ in range(num_envs)]
        for index, env in enumerate(envs):
            env.reset(seed=index)
        joint = [np.concatenate([a[aid] for aid in agents], axis=1) for a in pool]
        joint = [j.astype(np.float64) for j in joint]

        def step(i: int) -> None:
            actions = joint[i % ACTION_POOL]
            for index, env in enumerate(envs):
                _, _, terminated, truncated, _ = env.step(actions[index])
                if terminated or truncated:
                    env.reset()

        return step, lambda: [env.close() for env in envs]
    venv: Any
    if variant == "sync":
        venv = SyncTeamVectorEnv([MaMuJoCoEnv(cfg) for _ in range(num_envs)])
    else:
        venv = MaMuJoCoVectorEnv(cfg, num_envs)
    venv.reset(list(range(num_envs)), list(range(num_envs)))

    def step(i: int) -> None:
        out = venv.step(pool[i % ACTION_POOL])
        done = np.flatnonzero(out.terminated | out.truncated)
        if done.size:
            venv.reset([int(d) for d in done], [None] * done.size)

    return step, venv.close


def _measure(step: Callable[[int], None], num_steps: int) -> tuple[float, float]:
    """CPU and wall seconds of ``num_steps`` calls of ``step``."""
    cpu0, wall0 = time.process_time(), time.perf_counter()
    for i in range(num_steps):
        step(i)
    return time.process_time() - cpu0, time.perf_counter() - wall0


def main() -> None:
    """Runs the interleaved measurements; writes ``rows.csv`` and ``summary.md``."""
    args = _parse_args()
    quiet_logs(["gymnasium", "ray"])
    load_before = os.getloadavg()
    steppers = {(t, v): _stepper(v, t, args.num_envs) for t in args.tasks for v in VARIANTS}
    for step, _ in steppers.values():  # Warm-up: first-step checks, caches.
        _measure(step, 20)
    rows = []
    for repeat in range(args.repeats):
        for task in args.tasks:
            for variant in rotate(VARIANTS, repeat):
                cpu_s, wall_s = _measure(steppers[task, variant][0], args.steps)
                env_steps = args.steps * args.num_envs
                rows.append(
                    {
                        "task": task,
                        "variant": variant,
                        "repeat": repeat,
                        "num_envs": args.num_envs,
                        "env_steps": env_steps,
                        "cpu_s": cpu_s,
                        "wall_s": wall_s,
                        "steps_per_cpu_s": env_steps / cpu_s,
                        "steps_per_wall_s": env_steps / wall_s,
                        "loadavg_1m": os.getloadavg()[0],
                    }
                )
    for _, close in steppers.values():
        close()
    load_after = os.getloadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "rows.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    table = _table(rows, args.tasks)
    summary = (
        f"# MaMuJoCo vector env: HalfCheetah, N = {args.num_envs}, {args.steps} steps x "
        f"{args.repeats} repeats, medians\n\n"
        f"Load average (1, 5, 15 min): before {_load(load_before)}, after {_load(load_after)}; "
        f"{os.cpu_count()} CPUs.\n\n{table}\n"
    )
    (args.out / "summary.md").write_text(summary)
    print(summary)


def _table(rows: list[dict[str, Any]], tasks: list[str]) -> str:
    """Median rates per (task, variant) and their ratio to raw gymnasium stepping."""
    out = []
    for task in tasks:
        medians = {}
        for variant in VARIANTS:
            mine = [r for r in rows if r["task"] == task and r["variant"] == variant]
            medians[variant] = (
                statistics.median(r["steps_per_cpu_s"] for r in mine),
                statistics.median(r["steps_per_wall_s"] for r in mine),
            )
        base = medians["gymnasium"]
        for variant, (cpu, wall) in medians.items():
            ratios = [f"{cpu / base[0]:.0%}", f"{wall / base[1]:.0%}"]
            out.append([task, variant, f"{cpu:,.0f}", f"{wall:,.0f}", *ratios])
    header = ["task", "variant", "steps/CPU-s", "steps/wall-s", "vs gym (CPU)", "vs gym (wall)"]
    return markdown_table(header, out)


def _load(load: tuple[float, float, float]) -> str:
    return ", ".join(f"{x:.2f}" for x in load)


if __name__ == "__main__":
    main()
