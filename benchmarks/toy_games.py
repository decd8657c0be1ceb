"""Toy-game benchmark: HATRPO (uniform), HATRPO-W (kkt) and HATRPO-G (greedy) on the one-step
cooperative games of the joint-constraint paper (Shek, Shi & Tokekar, arXiv:2508.10340).

How to run
----------
From the repository root::

    python benchmarks/toy_games.py                      # the default campaign (see below)
    python benchmarks/toy_games.py --games differential --seeds 3 --iterations 40
    python benchmarks/toy_games.py --out results/toy_games_kl02 --kl-threshold 0.02
    python benchmarks/toy_games.py --games differential --initial-log-std -2.3 \
        --out results/toy_games_small_std     # start inside the local optimum's basin
    python benchmarks/toy_games.py --report-only  # summary and plots from runs.csv only

The default campaign is 3 games × 3 allocators × 10 seeds (90 runs) of 60 iterations of
256 env steps each (15,360 env steps per run). On an idle 2-core machine with ``--workers 2``
an iteration costs ≈0.2–0.25 s per run, so the campaign takes ≈12 minutes; the first
campaign took 1,906 s on a 2-core machine shared with other jobs (load average 3–7).
Pilots showed why 60 is enough: the matrix-game policies are deterministic by iteration
20–40, and on the differential game every run has settled in its final region by ≈40.
It is resumable: every finished run is appended to ``<out>/runs.csv`` at once, and a run
whose (game, allocator, seed) is already complete there is skipped, so an interrupted
campaign continues where it stopped. The hyperparameters of a results folder are kept in
``<out>/config.json``; a second call with different ones is refused (use another ``--out``).

What it measures
----------------
Games (every episode is one step, so the mean reward of a batch *is* the team return):

- ``differential``: the bimodal differential game with the env's ``"scaled"`` action mapping,
  R(a1, a2) on [-10, 10]², global optimum ≈ 1.040 at (5.19, 5.00), local optimum ≈ 0.950 at
  (1.12, 1.00). Each agent's Gaussian policy acts in [-1, 1], scaled by ``action_scale`` (10).
  The game as the paper sets it (the square [0, 7]², a start on the edge of the local basin)
  is measured by ``differential_game.py``.
- ``climbing`` and ``penalty``: 3×3 cooperative matrix games (optimum 11 resp. 10);
  ``penalty_mild`` (not in the default campaign): the penalty game with k = -10.
  ``--allocators`` also accepts ``waterfill``, a reading of the paper's HATRPO-W, not its
  method (``rllib_hatrpo.core.allocation.waterfill``).

The matrix-game campaign of ``docs/results.md``::

    python benchmarks/toy_games.py --games climbing penalty penalty_mild \
        --allocators uniform kkt greedy waterfill --iterations 40 --batch-size 200 \
        --workers 1 --out docs/data/matrix_games

With the default initial log-std (−1: std ≈ 3.7 in played units) the differential-game
policies see the whole surface; agent_0's mean then tends to leave the box, where every
sample is clipped to a1 = 10 and R ≈ 1.0 is flat in a1 (no gradient back to a1 = 5.19). The
table therefore also counts runs that beat the local optimum's value and runs that end at the
edge; ``--initial-log-std`` (e.g. −2.3, std ≈ 1.0 played) starts inside the local basin.

Per run and iteration (``runs.csv``): the batch's team return; the deterministic joint
action after the update (Gaussian mean × action_scale, clipped like the env clips it; the
arg-max cell for matrix games) and its payoff; the policies' std (differential) or the
probability of the greedy action (matrix); the allocator's per-agent ``kl_budget``, achieved
``kl``, q_i, line-search acceptance and update rank; and the sampling and learner wall time.
Row ``iteration = 0`` holds the initial policy's deterministic action only.

Success: differential game — the deterministic joint action lies within ``--radius``
(default 1.0, in played-action units) of ``GLOBAL_OPTIMUM``; matrix games — the greedy
joint action is an optimal cell. *Iterations to success* is the first iteration t from
which the criterion holds at every iteration up to the last one ("settled"); a run that
does not satisfy it at the last iteration is not a success. ``summary.csv`` also has the
first iteration at which the criterion held at all ("first hit").

All allocators use the same hyperparameters and the same joint budget δ_total =
n · ``--kl-threshold`` (n = 2), so "uniform" is exactly HATRPO. Every other setting is the
package default (HARL's HATRPO values: actor/critic MLP [128, 128], initial log-std −1,
CG 10 iterations, damping 0.1, 10 backtracking steps).

Outputs in ``--out`` (default ``results/toy_games/``): ``runs.csv``, ``summary.csv``,
``summary.md``, ``config.json``, ``differential_trajectories.png`` (the reward surface with
each run's deterministic joint actions, one panel per allocator), ``budget_shares.png``
(per-agent δ_i/δ_total and KL_i/δ_total over iterations for every allocator but uniform,
mean over seeds) and ``team_return.png`` (mean team return over iterations). The markdown
table is printed last.

Training path: in-process, with the package's real learner. Per run, ``cfg.validate()``, a
``MultiAgentEnvRunner`` (no Ray cluster) and ``cfg.build_learner(...)``; per iteration
``runner.sample`` → ``learner.update`` → the actors' inference-only weights go back to the
runner with ``runner.set_state({COMPONENT_RL_MODULE: ...})``, which is what
``EnvRunnerGroup.sync_weights`` does (``_common.push_actor_weights``); after the first
iteration of every run the script asserts that the runner's weights equal the learner's.
Measured here on the differential game (batch 256, 32 envs, 1 torch thread): ≈0.25 s per
iteration in-process against ≈0.42 s per ``algo.train()`` of
``HATRPOConfig().env_runners(num_env_runners=0).build_algo()`` (plus ≈10 s ``ray.init`` and
≈2.4 s per build), so the in-process path is used. Runs are
spread over ``--workers`` processes (default 2, one torch thread each); the learner times are
therefore taken under the same contention for every allocator (runs are interleaved), which
makes their ratios, not their absolute values, the figure.

Code: this file (command line, resumable campaign, report), ``_toy_games_run.py`` (one run),
``_toy_games_report.py`` (summary, table, plots) and ``_common.py`` (helpers shared with
``throughput.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd
from _toy_games_report import (
    plot_budget_shares,
    plot_returns,
    plot_trajectories,
    summarize,
    summary_table,
)
from _toy_games_run import GAMES, MATRIX_GAME_CONFIGS, RUN_KEYS, train_run

from rllib_hatrpo.core.allocation import ALL_ALLOCATOR_NAMES, ALLOCATOR_NAMES

# Hyperparameters that must match for runs of one results folder to be comparable.
CAMPAIGN_KEYS = (
    "iterations",
    "batch_size",
    "kl_threshold",
    "num_envs",
    "radius",
    "action_scale",
    "initial_log_std",
)


# --------------------------------------------------------------------------------------------
# The campaign: resumable, parallel
# --------------------------------------------------------------------------------------------


def check_campaign_config(out: Path, params: dict[str, Any]) -> None:
    """Writes config.json, or refuses to mix runs with other hyperparameters into ``out``."""
    path = out / "config.json"
    campaign = {k: params[k] for k in CAMPAIGN_KEYS}
    if path.exists():
        stored = json.loads(path.read_text())
        if {k: stored.get(k) for k in CAMPAIGN_KEYS} != campaign:
            sys.exit(
                f"{out} holds runs with other hyperparameters ({stored}); this call has "
                f"{campaign}. Use another --out."
            )
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(campaign, indent=2) + "\n")


def completed_runs(runs_csv: Path, iterations: int) -> set[tuple[str, str, int]]:
    """(game, allocator, seed) of the runs in runs.csv that reached the last iteration."""
    if not runs_csv.exists():
        return set()
    df = pd.read_csv(runs_csv, usecols=[*RUN_KEYS, "iteration"])
    done = df.groupby(RUN_KEYS)["iteration"].max()
    return {(g, a, int(s)) for (g, a, s), last in done.items() if last >= iterations}


def append_rows(runs_csv: Path, rows: list[dict]) -> None:
    """Appends one finished run to runs.csv (header on first write)."""
    df = pd.DataFrame(rows)
    # 7 significant digits: well below the seeds' spread, and a third of the full-precision size.
    df.to_csv(runs_csv, mode="a", header=not runs_csv.exists(), index=False, float_format="%.7g")


def run_campaign(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Trains every missing (game, allocator, seed) run; allocators interleaved, so that the
    per-iteration timings of the allocators see the same machine load."""
    runs_csv = args.out / "runs.csv"
    done = completed_runs(runs_csv, args.iterations)
    todo = [
        (game, allocator, seed)
        for seed in args.seeds
        for game in args.games
        for allocator in args.allocators
        if (game, allocator, seed) not in done
    ]
    print(f"{len(done)} runs already in {runs_csv}; {len(todo)} to train.", flush=True)
    if not todo:
        return
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers, mp_context=get_context("spawn")) as pool:
        futures = {pool.submit(train_run, *key, params): key for key in todo}
        for k, future in enumerate(as_completed(futures), 1):
            rows = future.result()
            append_rows(runs_csv, rows)
            last = rows[-1]
            print(
                f"[{k}/{len(todo)} {time.perf_counter() - start:6.0f}s] "
                f"{'/'.join(map(str, futures[future]))}: return {last['team_return']:.3f}, "
                f"det. {last['det_return']:.3f}, success {bool(last['success'])}",
                flush=True,
            )


def report(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """Writes summary.csv/.md and the plots from runs.csv; returns the markdown table."""
    df = pd.read_csv(args.out / "runs.csv")
    df = df[df["seed"].isin(args.seeds)]
    df = df[df["game"].isin(args.games) & df["allocator"].isin(args.allocators)]
    summary = summarize(df, args.games, args.allocators, params)
    summary.to_csv(args.out / "summary.csv", index=False)
    table = summary_table(summary, params)
    (args.out / "summary.md").write_text(table + "\n")
    plot_trajectories(df, list(args.allocators), args.out / "differential_trajectories.png")
    plot_budget_shares(df, list(args.games), args.out / "budget_shares.png")
    plot_returns(df, list(args.games), list(args.allocators), args.out / "team_return.png")
    return table


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--games", nargs="+", choices=(*GAMES, *MATRIX_GAME_CONFIGS), default=list(GAMES)
    )
    p.add_argument(
        "--allocators", nargs="+", choices=ALL_ALLOCATOR_NAMES, default=list(ALLOCATOR_NAMES)
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=10,
        help="number of seeds: runs use seeds 0 .. SEEDS-1 (default 10)",
    )
    p.add_argument("--iterations", type=int, default=60, help="iterations per run (60)")
    p.add_argument(
        "--batch-size",
        type=int,
        default=256,
        help="env steps (= one-step episodes) per iteration (256)",
    )
    p.add_argument(
        "--kl-threshold",
        type=float,
        default=0.01,
        help="δ per agent; δ_total = 2·δ for every allocator (0.01, HARL's value)",
    )
    p.add_argument(
        "--num-envs",
        type=int,
        default=32,
        help="vectorised envs of the in-process EnvRunner (32; speed only)",
    )
    p.add_argument(
        "--radius",
        type=float,
        default=1.0,
        help="differential game: success radius around the global optimum (1.0)",
    )
    p.add_argument(
        "--action-scale",
        type=float,
        default=10.0,
        help="differential game: played action = scale × policy action (10, the "
        "env default: actions in [-10, 10])",
    )
    p.add_argument(
        "--initial-log-std",
        type=float,
        default=None,
        help="actors' initial log-std (default: the package's, -1.0)",
    )
    p.add_argument("--workers", type=int, default=2, help="parallel run processes (2)")
    p.add_argument("--out", type=Path, default=Path("results/toy_games"))
    p.add_argument(
        "--report-only",
        action="store_true",
        help="only rebuild the summary and plots from runs.csv",
    )
    args = p.parse_args(argv)
    args.seeds = list(range(args.seeds))
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    params = {
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "kl_threshold": args.kl_threshold,
        "num_envs": args.num_envs,
        "radius": args.radius,
        "action_scale": args.action_scale,
        "initial_log_std": args.initial_log_std,
        "workers": args.workers,  # not a campaign key: speed only
    }
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    check_campaign_config(args.out, params)
    start = time.perf_counter()
    if not args.report_only:
        run_campaign(args, params)
    table = report(args, params)
    print(f"\nwall time {time.perf_counter() - start:.0f}s; results in {args.out}/\n")
    print(table)


if __name__ == "__main__":
    main()
