"""The differential game of the joint-constraint paper (Shek, Shi & Tokekar, arXiv:2508.10340),
set as the paper draws it, with HATRPO (uniform), HATRPO-W (kkt), HATRPO-G (greedy) and the
water-filling reading of HATRPO-W (waterfill; a reading of the paper, not the paper's method).

How to run
----------
From the repository root, one setting at a time (each is resumable)::

    python benchmarks/differential_game.py run --kl-threshold 0.01 --initial-std 0.5
    python benchmarks/differential_game.py run --kl-threshold 0.05 --initial-std 1.0 \
        --batch-size 30
    python benchmarks/differential_game.py report     # figures and tables of every setting

The game: R(a1, a2) on the square [0, 7]² (``DifferentialGameEnv`` with its default
``action_mapping="paper"``): each agent's Gaussian policy acts in ℝ (exact log-probabilities)
and the env plays a_i = clip(start_i + u_i, 0, 7), so the initial actors (mean 0) start at the
mean action ``--start`` (default (2.5, 1.0), the edge of the local basin as in the paper's
figure). The action spaces are ``Box(-inf, inf)``, which RLlib's ``normalize_actions`` and
``clip_actions`` leave alone. The initial std is ``initial_log_std = log(--initial-std)``.

A setting is (kl_threshold, initial std, batch size, iterations, start); its runs go to
``docs/data/differential_game/<tag>/runs.csv`` (tag e.g. ``kl0.01_std0.5_b200_it60``), one
run appended as soon as it finishes; a rerun skips the finished (allocator, seed) pairs. The
seeds are fixed in advance (0 .. --seeds-1) and every allocator gets the same
hyperparameters (the package defaults otherwise) and the same joint budget
δ_total = 2 · kl_threshold. Runs are trained one after another in this process (one torch
thread).

Per run and iteration (``runs.csv``): the mean action of each agent after the update
(``action_agent_i`` = clip(start_i + policy mean, 0, 7)), the policy mean and std, the
batch's team return, the mean action's reward (``det_return``), ``global_basin`` (the mean
action is closer to the global optimum (5.19, 5.00) than to the local one (1.12, 1.00)), and
the allocator's per-agent ``kl_budget``, achieved ``kl``, q_i, acceptance and update rank.
Row ``iteration = 0`` is the initial policy.

Success: ``global_basin`` at the last iteration. Iterations to success: the first iteration
from which ``global_basin`` holds to the end.

``report`` writes, per setting, ``trajectories_<tag>.png`` (the reward heatmap with contours,
each method's seed-averaged mean-action trajectory, thick, and every seed's, thin) and
``budget_shares_<tag>.png`` (agent_0's share δ_0/δ_total per iteration), and
``summary.md``/``summary.csv`` with one row per setting × allocator, and
``smoothed_gradient.md``: the gradient of the std-smoothed reward E[R(clip(μ + std·ε))] at the
start, by quadrature (`_differential_game_report.smoothed_gradient`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _toy_games_run import train_run
from toy_games import append_rows, completed_runs

from rllib_hatrpo.core.allocation import ALL_ALLOCATOR_NAMES

DATA = Path("docs/data/differential_game")
#: The seeds of every setting, fixed before any run.
SEEDS = tuple(range(10))
GAME = "differential"
#: What must match for runs to share a setting folder.
SETTING_KEYS = ("kl_threshold", "initial_std", "batch_size", "iterations", "start", "num_envs")


def setting_tag(setting: dict[str, Any]) -> str:
    """The folder name of a setting, e.g. ``kl0.01_std0.5_b200_it60`` (start appended when it
    is not the default)."""
    tag = (
        f"kl{setting['kl_threshold']:g}_std{setting['initial_std']:g}"
        f"_b{setting['batch_size']}_it{setting['iterations']}"
    )
    if tuple(setting["start"]) != (2.5, 1.0):
        tag += f"_start{setting['start'][0]:g}x{setting['start'][1]:g}"
    return tag


def run_params(setting: dict[str, Any]) -> dict[str, Any]:
    """The ``_toy_games_run.train_run`` parameters of a setting."""
    return {
        "iterations": setting["iterations"],
        "batch_size": setting["batch_size"],
        "kl_threshold": setting["kl_threshold"],
        "num_envs": setting["num_envs"],
        "radius": None,  # success = the global basin (`in_global_basin`)
        "action_scale": None,
        "initial_log_std": math.log(setting["initial_std"]),
        "env_config": {"action_mapping": "paper", "start": list(setting["start"])},
    }


def check_setting(out: Path, setting: dict[str, Any]) -> None:
    """Writes ``config.json`` or refuses a folder that holds another setting."""
    path = out / "config.json"
    wanted = {k: setting[k] for k in SETTING_KEYS}
    wanted["start"] = list(wanted["start"])
    if path.exists():
        stored = json.loads(path.read_text())
        if {k: stored.get(k) for k in SETTING_KEYS} != wanted:
            sys.exit(f"{out} holds another setting ({stored}); this call has {wanted}.")
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(wanted, indent=2) + "\n")


def run_setting(args: argparse.Namespace) -> None:
    """Trains every missing (allocator, seed) run of one setting, seed-major."""
    setting = {
        "kl_threshold": args.kl_threshold,
        "initial_std": args.initial_std,
        "batch_size": args.batch_size,
        "iterations": args.iterations,
        "start": tuple(args.start),
        "num_envs": args.num_envs,
    }
    out = args.data / setting_tag(setting)
    check_setting(out, setting)
    runs_csv = out / "runs.csv"
    done = completed_runs(runs_csv, args.iterations)
    todo = [
        (allocator, seed)
        for seed in SEEDS[: args.seeds]
        for allocator in args.allocators
        if (GAME, allocator, seed) not in done
    ]
    print(f"{out}: {len(done)} runs done, {len(todo)} to train.", flush=True)
    params = run_params(setting)
    start = time.perf_counter()
    for k, (allocator, seed) in enumerate(todo, 1):
        rows = train_run(GAME, allocator, seed, params)
        extra = {key: setting[key] for key in ("kl_threshold", "initial_std", "batch_size")}
        append_rows(runs_csv, [{**row, **extra} for row in rows])
        last = rows[-1]
        print(
            f"[{k}/{len(todo)} {time.perf_counter() - start:6.0f}s] {allocator}/{seed}: "
            f"mean action ({last['action_agent_0']:.2f}, {last['action_agent_1']:.2f}), "
            f"global basin {bool(last['global_basin'])}",
            flush=True,
        )


def report(args: argparse.Namespace) -> None:
    """Figures per setting and the summary table of every setting under ``args.data``."""
    from _differential_game_report import (
        gradient_table,
        plot_budget_shares,
        plot_trajectories,
        summarize,
        summary_markdown,
    )

    summaries = []
    for runs_csv in sorted(args.data.glob("*/runs.csv")):
        tag = runs_csv.parent.name
        df = pd.read_csv(runs_csv)
        setting = json.loads((runs_csv.parent / "config.json").read_text())
        plot_trajectories(df, tag, setting, args.data / f"trajectories_{tag}.png")
        plot_budget_shares(df, tag, args.data / f"budget_shares_{tag}.png")
        summaries.append(summarize(df).assign(setting=tag))
    if not summaries:
        sys.exit(f"no runs.csv under {args.data}")
    summary = pd.concat(summaries, ignore_index=True)
    summary.to_csv(args.data / "summary.csv", index=False)
    table = summary_markdown(summary)
    (args.data / "summary.md").write_text(table + "\n")
    gradients = gradient_table([(2.5, 1.0), (2.0, 1.0)], [0.3, 0.5, 0.8, 1.0, 1.2, 1.3, 1.5, 2.0])
    (args.data / "smoothed_gradient.md").write_text(gradients + "\n")
    print(table, gradients, sep="\n\n")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train the missing runs of one setting")
    run.add_argument("--kl-threshold", type=float, default=0.01, help="δ per agent (0.01)")
    run.add_argument("--initial-std", type=float, default=0.5, help="actors' initial std (0.5)")
    run.add_argument("--batch-size", type=int, default=200, help="episodes per iteration (200)")
    run.add_argument("--iterations", type=int, default=60, help="iterations per run (60)")
    run.add_argument("--start", type=float, nargs=2, default=(2.5, 1.0), help="mean action")
    run.add_argument("--seeds", type=int, default=len(SEEDS), help="the first N of SEEDS")
    run.add_argument("--num-envs", type=int, default=20, help="vectorised envs (speed only)")
    run.add_argument(
        "--allocators",
        nargs="+",
        choices=ALL_ALLOCATOR_NAMES,
        default=list(ALL_ALLOCATOR_NAMES),
    )
    for parser in (run, sub.add_parser("report", help="figures and tables of every setting")):
        parser.add_argument("--data", type=Path, default=DATA)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "run":
        import torch

        torch.set_num_threads(1)
        run_setting(args)
    else:
        report(args)


if __name__ == "__main__":
    main()
