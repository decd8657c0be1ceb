"""Summary and tables of the throughput benchmark (``throughput.py``): medians and ratios per
task × method, the ceilings, the sampling scaling and ``summary.md``.
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from _common import markdown_table

from rllib_hatrpo.metrics import NUM_PROPOSALS


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
                    NUM_PROPOSALS,
                ):
                    row[col] = g[col].median()
            if method in lo.groups:
                row["learner_only_s"] = lo.get_group(method)["learner_s"].median()
                row["learner_only_proposals"] = lo.get_group(method)[NUM_PROPOSALS].median()
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


def summary_table(summary: pd.DataFrame) -> str:
    """The summary as a markdown table; columns missing from ``summary`` are left out."""
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
    rows = []
    for _, row in summary.iterrows():
        cells = []
        for key, _, fmt in cols:
            value = row.get(key)
            missing = value is None or (isinstance(value, float) and np.isnan(value))
            cells.append("–" if missing else fmt.format(value))
        rows.append(cells)
    return markdown_table([c[1] for c in cols], rows)


def ceilings_table(df: pd.DataFrame, tasks: list[str]) -> str:
    """Median env steps/s of the raw env and of the in-process samplers, per task."""
    names = {
        "env_pettingzoo": "PettingZoo env.step",
        "env_wrapper": "MaMuJoCoEnv.step",
        "sampler_hatrpo": "in-process sampler (HATRPO actors)",
        "sampler_ppo": "in-process sampler (PPO modules)",
    }
    rows = []
    for task in tasks:
        cells = [task]
        for method in names:
            hit = df[(df.task == task) & (df.method == method)]["env_steps_per_s"]
            cells.append(f"{hit.median():.0f}" if len(hit) else "–")
        rows.append(cells)
    return markdown_table(["task", *names.values()], rows)


def environment_info() -> dict[str, str]:
    """Versions of the libraries that set the speed, the platform and the thread count."""
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


def _fvp_text(args) -> str:
    if args.fvp_subsample is None:
        return ""
    return f", `fvp_subsample={args.fvp_subsample}` (the RLlib-runner baseline: 1)"


def _sampler_text(args) -> str:
    if args.pipeline_runners == 0:
        return f"sampling in the driver (no remote EnvRunner) × {args.num_envs} envs"
    return f"{args.pipeline_runners} remote EnvRunner(s) × {args.num_envs} envs"


def write_summary(path: Path, args, summary, df, info, loads, wall_s) -> str:
    """Writes ``summary.md`` (settings, versions, load, the tables); returns the main table."""
    table = summary_table(summary)
    pipe = df[df.phase == "pipeline"]
    check = (pipe.learner_timer_s - pipe.learner_s).abs().max() if len(pipe) else float("nan")
    text = f"""# Throughput: HATRPO / HATRPO-W / HATRPO-G vs RLlib PPO (MaMuJoCo HalfCheetah)

Generated {datetime.now(timezone.utc).isoformat(timespec="seconds")} by
`python benchmarks/throughput.py {" ".join(sys.argv[1:])}`; total wall time {wall_s:.0f} s.

Versions: {", ".join(f"{k} {v}" for k, v in info.items())}.
Load average (1/5/15 min) at start {loads[0]}, at end {loads[1]}: **a shared, noisy machine**;
compare the ratios, not the absolute times. All figures come from this one run.

Settings (all methods): {_sampler_text(args)},
`train_batch_size_per_learner={args.batch}`, `rollout_fragment_length="auto"`, local learner,
seed {args.seed}, agent_obsk 1; 1 untimed warm-up then {args.iters} timed iterations per
method, interleaved round-robin. PPO: RLlib defaults, `num_epochs={args.ppo_epochs}`,
`minibatch_size={args.ppo_minibatch}`, one module per agent.
HATRPO: package defaults{_fvp_text(args)}.
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


def scaling_table(df: pd.DataFrame, tasks: list[str]) -> str:
    """Median sampling env steps/s per task and EnvRunner count (× the first count)."""
    hits = df[df.phase == "scaling"]
    if hits.empty:
        return "(not measured)"
    counts = sorted(hits.env_runners.unique())
    rows = []
    for task in tasks:
        base = hits[(hits.task == task) & (hits.env_runners == counts[0])].env_steps_per_s.median()
        cells = [task]
        for n in counts:
            rate = hits[(hits.task == task) & (hits.env_runners == n)].env_steps_per_s.median()
            cells.append(f"{rate:.0f} (×{rate / base:.2f})")
        rows.append(cells)
    return markdown_table(["task", *(f"{int(n)} EnvRunner(s)" for n in counts)], rows)
