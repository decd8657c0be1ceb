"""Toy-game benchmark: HATRPO (uniform), HATRPO-W (kkt) and HATRPO-G (greedy) on the paper's
one-step cooperative games (hatrpo.md §3.4, benchmarks.md "paper toy games").

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

- ``differential``: the bimodal differential game, R(a1, a2) on [-10, 10]², global optimum
  ≈ 1.040 at (5.19, 5.00), local optimum ≈ 0.950 at (1.12, 1.00). Each agent's Gaussian
  policy acts in [-1, 1], scaled by the env's ``action_scale`` (10).
- ``climbing`` and ``penalty``: 3×3 cooperative matrix games (optimum 11 resp. 10).

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
(per-agent δ_i/δ_total and KL_i/δ_total over iterations for kkt and greedy, mean over seeds)
and ``team_return.png`` (mean team return over iterations). The markdown table is printed
last.

Training path: in-process, with the package's real learner. Per run, ``cfg.validate()``, a
``MultiAgentEnvRunner`` (no Ray cluster) and ``cfg.build_learner(...)``; per iteration
``runner.sample`` → ``learner.update`` → the actors' inference-only weights go back to the
runner with ``runner.set_state({COMPONENT_RL_MODULE: ...})``, which is what
``EnvRunnerGroup.sync_weights`` does; after the first iteration of every run the script
asserts that the runner's weights equal the learner's. Measured here on the differential
game (batch 256, 32 envs, 1 torch thread): ≈0.25 s per iteration in-process against
≈0.42 s per ``algo.train()`` of ``HATRPOConfig().env_runners(num_env_runners=0).build_algo()``
(plus ≈10 s ``ray.init`` and ≈2.4 s per build), so the in-process path is used. Runs are
spread over ``--workers`` processes (default 2, one torch thread each); the learner times are
therefore taken under the same contention for every allocator (runs are interleaved), which
makes their ratios, not their absolute values, the figure.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
import warnings
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

AGENTS = ("agent_0", "agent_1")
ALLOCATORS = ("uniform", "kkt", "greedy")
GAMES = ("differential", "climbing", "penalty")
RUN_KEYS = ["game", "allocator", "seed"]
PER_AGENT_METRICS = {  # learner metric -> runs.csv column prefix
    "kl_budget": "kl_budget",
    "kl": "kl",
    "natgrad_sq_norm": "natgrad_sq_norm",
    "line_search_accepted": "accepted",
    "update_rank": "rank",
}
# Differential game: a run whose final |a1| is at least this fraction of action_scale sits on
# the edge of the action box (where the 0.1·a1 slope alone is worth ≈ 0.1·action_scale).
EDGE_FRACTION = 0.99
# Differential game: "beat the local optimum" needs a deterministic return above its value
# plus this margin (a policy sitting on the local optimum matches its rounded value).
ESCAPE_MARGIN = 0.01
OVERALL_METRICS = ("total_kl_budget", "kl_total", "skipped_steps", "num_proposals")
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
# One run
# --------------------------------------------------------------------------------------------


def env_spec(game: str, params: dict[str, Any]) -> tuple[type, dict[str, Any]]:
    """The env class and env_config of a game name."""
    from rllib_hatrpo.envs import DifferentialGameEnv, MatrixGameEnv

    if game == "differential":
        return DifferentialGameEnv, {"action_scale": params["action_scale"]}
    if game in ("climbing", "penalty"):
        return MatrixGameEnv, {"game": game}
    raise ValueError(f"unknown game {game!r}; choose from {GAMES}")


def make_config(game: str, allocator: str, seed: int, params: dict[str, Any]):
    """The HATRPOConfig of one run: package defaults except batch, δ, allocator and seed
    (and the actors' initial log-std when ``--initial-log-std`` is given)."""
    from rllib_hatrpo import HATRPOConfig

    env_cls, env_config = env_spec(game, params)
    training = {
        "train_batch_size_per_learner": params["batch_size"],
        "kl_threshold": params["kl_threshold"],
        "kl_allocator": allocator,
    }
    if params["initial_log_std"] is not None:
        training["initial_log_std"] = params["initial_log_std"]
    return (
        HATRPOConfig()
        .environment(env_cls, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=params["num_envs"])
        .training(**training)
        .debugging(seed=seed)
    )


def sync_weights(runner, learner) -> None:
    """Pushes the learner's actor weights to the runner (as EnvRunnerGroup.sync_weights)."""
    from ray.rllib.core import COMPONENT_RL_MODULE

    components = [f"{COMPONENT_RL_MODULE}/{aid}" for aid in AGENTS]
    state = learner.get_state(components=components, inference_only=True)
    runner.set_state({COMPONENT_RL_MODULE: state[COMPONENT_RL_MODULE]})


def assert_weights_synced(runner, learner) -> None:
    """The runner's actors hold exactly the learner's (inference-only) weights."""
    for aid in AGENTS:
        ours = learner.module[aid].get_state(inference_only=True)
        theirs = runner.module[aid].get_state()
        assert sorted(ours) == sorted(theirs), (aid, sorted(ours), sorted(theirs))
        for key, value in ours.items():
            assert np.array_equal(np.asarray(value), np.asarray(theirs[key])), (aid, key)


def policy_snapshot(learner, game: str, env, radius: float) -> dict[str, float]:
    """Deterministic joint action, its payoff, and each policy's spread, from the actors'
    forward pass on the game's constant observation 0."""
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_hatrpo.envs import LOCAL_OPTIMUM, differential_game_reward

    row: dict[str, float] = {}
    played = []
    for aid in AGENTS:
        module = learner.module[aid]
        obs = torch.zeros((1, *module.observation_space.shape), dtype=torch.float32)
        with torch.no_grad():
            logits = module.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS][0]
        if game == "differential":
            mean, log_std = logits[:1], logits[1:]
            action = env.action_scale * float(np.clip(float(mean[0]), -1.0, 1.0))
            row[f"policy_std_{aid}"] = env.action_scale * float(torch.exp(log_std[0]))
            row[f"greedy_prob_{aid}"] = math.nan
        else:
            probs = torch.softmax(logits, dim=-1)
            action = int(torch.argmax(logits))
            row[f"policy_std_{aid}"] = math.nan
            row[f"greedy_prob_{aid}"] = float(probs[action])
        row[f"action_{aid}"] = float(action)
        played.append(action)
    if game == "differential":
        row["det_return"] = differential_game_reward(*played)
    else:
        row["det_return"] = float(env.payoff[played[0], played[1]])
    row["success"] = float(is_success(game, played, row["det_return"], env, radius))
    # Differential game: the deterministic return beats the local optimum's value by more than
    # ESCAPE_MARGIN (the run left the local optimum, to the global one or elsewhere); matrix
    # games: = success.
    row["escaped"] = (
        float(row["det_return"] > LOCAL_OPTIMUM.value + ESCAPE_MARGIN)
        if game == "differential"
        else row["success"]
    )
    return row


def is_success(game: str, played: list, det_return: float, env, radius: float) -> bool:
    """The success criterion of the module docstring, for one deterministic joint action."""
    from rllib_hatrpo.envs import GLOBAL_OPTIMUM

    if game == "differential":
        return math.hypot(played[0] - GLOBAL_OPTIMUM.a1, played[1] - GLOBAL_OPTIMUM.a2) <= radius
    return det_return >= env.optimum - 1e-9


def learner_row(results: dict[str, Any]) -> dict[str, float]:
    """The allocator's per-agent and per-iteration metrics from ``learner.update``'s results."""

    def peek(value: Any) -> float:
        value = value.peek() if hasattr(value, "peek") else value
        return float(value)

    row = {}
    for aid in AGENTS:
        for key, prefix in PER_AGENT_METRICS.items():
            row[f"{prefix}_{aid}"] = peek(results[aid][key])
    for key in OVERALL_METRICS:
        row[key] = peek(results["__all_modules__"][key])
    return row


def train_run(game: str, allocator: str, seed: int, params: dict[str, Any]) -> list[dict]:
    """Trains one (game, allocator, seed) run in-process; returns its runs.csv rows."""
    _quiet_worker()
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    cfg = make_config(game, allocator, seed, params)
    cfg.validate()
    runner = MultiAgentEnvRunner(config=cfg)
    learner = cfg.build_learner(spaces=runner.get_spaces())
    env_cls, env_config = env_spec(game, params)
    env = env_cls(env_config)
    base = {"game": game, "allocator": allocator, "seed": seed}
    rows = [
        {
            **base,
            "iteration": 0,
            "env_steps": 0,
            **policy_snapshot(learner, game, env, params["radius"]),
        }
    ]
    env_steps = 0
    for iteration in range(1, params["iterations"] + 1):
        t0 = time.perf_counter()
        episodes = runner.sample(num_timesteps=params["batch_size"])
        t1 = time.perf_counter()
        # One-step episodes: each agent's return is the team reward of its episode.
        rewards = [r for e in episodes for r in e.agent_episodes[AGENTS[0]].get_rewards()]
        env_steps += sum(len(e) for e in episodes)
        results = learner.update(episodes=episodes, timesteps={})
        t2 = time.perf_counter()
        sync_weights(runner, learner)
        if iteration == 1:
            assert_weights_synced(runner, learner)
        rows.append(
            {
                **base,
                "iteration": iteration,
                "env_steps": env_steps,
                "team_return": float(np.mean(rewards)),
                **policy_snapshot(learner, game, env, params["radius"]),
                **learner_row(results),
                "sample_s": t1 - t0,
                "learn_s": t2 - t1,
            }
        )
    runner.stop()
    return rows


def _quiet_worker() -> None:
    """One torch thread per worker process (2 workers on 2 cores); no RLlib chatter."""
    import ray.rllib  # noqa: F401  (configures Ray's loggers; quiet them afterwards)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    for name in ("ray", "ray.rllib", "ray.rllib.core.rl_module.rl_module", "rllib_hatrpo"):
        logging.getLogger(name).setLevel(logging.ERROR)


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
    df.to_csv(runs_csv, mode="a", header=not runs_csv.exists(), index=False)


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


# --------------------------------------------------------------------------------------------
# Summary and plots
# --------------------------------------------------------------------------------------------


def settled_iteration(success: pd.Series) -> float:
    """First iteration from which ``success`` (indexed by iteration ≥ 1) holds to the end."""
    success = success.sort_index().astype(bool)
    if not success.iloc[-1]:
        return math.nan
    failures = success.index[~success.to_numpy()]
    return float(failures.max() + 1) if len(failures) else float(success.index.min())


def per_run_table(df: pd.DataFrame, params: dict[str, Any]) -> pd.DataFrame:
    """One row per run: final return, final deterministic return, success and iterations."""
    from rllib_hatrpo.envs import LOCAL_OPTIMUM

    trained = df[df["iteration"] >= 1]
    edge = EDGE_FRACTION * params["action_scale"]
    rows = []
    for (game, allocator, seed), run in trained.groupby(RUN_KEYS):
        run = run.set_index("iteration").sort_index()
        last = run.iloc[-1]
        hits = run.index[run["success"].astype(bool).to_numpy()]
        rows.append(
            {
                "game": game,
                "allocator": allocator,
                "seed": seed,
                "final_return": last["team_return"],
                "final_det_return": last["det_return"],
                "success": bool(last["success"]),
                "escaped": bool(
                    last["success"]
                    if game != "differential"
                    else last["det_return"] > LOCAL_OPTIMUM.value + ESCAPE_MARGIN
                ),
                "edge": bool(game == "differential" and abs(last["action_agent_0"]) >= edge),
                "iters_settled": settled_iteration(run["success"]),
                "iters_first_hit": float(hits.min()) if len(hits) else math.nan,
                "learn_ms": 1e3 * run["learn_s"].median(),
                "sample_ms": 1e3 * run["sample_s"].median(),
            }
        )
    return pd.DataFrame(rows)


def summarize(
    df: pd.DataFrame, games: Iterable[str], allocators: Iterable[str], params: dict[str, Any]
) -> pd.DataFrame:
    """Per game × allocator: return mean ± std over seeds, successes, iterations, timing."""
    runs = per_run_table(df, params)
    rows = []
    for game in games:
        for allocator in allocators:
            r = runs[(runs["game"] == game) & (runs["allocator"] == allocator)]
            if r.empty:
                continue
            ok = r[r["success"]]
            rows.append(
                {
                    "game": game,
                    "allocator": allocator,
                    "seeds": len(r),
                    "final_return_mean": r["final_return"].mean(),
                    "final_return_std": r["final_return"].std(ddof=0),
                    "final_det_return_mean": r["final_det_return"].mean(),
                    "final_det_return_std": r["final_det_return"].std(ddof=0),
                    "successes": int(r["success"].sum()),
                    "escaped": int(r["escaped"].sum()),
                    "at_edge": int(r["edge"].sum()),
                    "median_iters_settled": ok["iters_settled"].median(),
                    "median_iters_first_hit": ok["iters_first_hit"].median(),
                    "learn_ms_per_iter": r["learn_ms"].median(),
                    "sample_ms_per_iter": r["sample_ms"].median(),
                }
            )
    return pd.DataFrame(rows)


def markdown_table(summary: pd.DataFrame, params: dict[str, Any]) -> str:
    """The summary as a markdown table, with the budget it was measured at."""
    from rllib_hatrpo.envs import GLOBAL_OPTIMUM, LOCAL_OPTIMUM

    global_text = f"({GLOBAL_OPTIMUM.a1:.2f}, {GLOBAL_OPTIMUM.a2:.2f})"
    log_std = params["initial_log_std"]
    lines = [
        f"Toy games: {params['iterations']} iterations × {params['batch_size']} env steps, "
        f"kl_threshold {params['kl_threshold']} (δ_total = 2 × {params['kl_threshold']}), "
        f"differential game: action_scale {params['action_scale']}, success radius "
        f"{params['radius']} around {global_text}; actors' initial log-std "
        f"{'package default' if log_std is None else log_std}.",
        "",
        "| game | allocator | final return | final det. return | success | "
        "median iters to success | beat local opt. / at edge | learner ms/iter |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for _, s in summary.iterrows():
        iters = s["median_iters_settled"]
        escaped = (
            f"{s['escaped']}/{s['seeds']} / {s['at_edge']}/{s['seeds']}"
            if s["game"] == "differential"
            else "—"
        )
        lines.append(
            f"| {s['game']} | {s['allocator']} "
            f"| {s['final_return_mean']:.3f} ± {s['final_return_std']:.3f} "
            f"| {s['final_det_return_mean']:.3f} ± {s['final_det_return_std']:.3f} "
            f"| {s['successes']}/{s['seeds']} "
            f"| {'—' if math.isnan(iters) else f'{iters:.0f}'} "
            f"| {escaped} | {s['learn_ms_per_iter']:.0f} |"
        )
    lines += [
        "",
        "final return: batch team return of the last iteration, mean ± std over seeds; "
        "final det. return: payoff of the deterministic joint action after the last update; "
        "success: that action is within the radius of the global optimum (differential) or "
        "an optimal cell (matrix); iters to success: first iteration from which success holds "
        "to the end, median over successful seeds; beat local opt.: final det. return > "
        f"{LOCAL_OPTIMUM.value:.3f} + {ESCAPE_MARGIN}; "
        f"at edge: final |a1| ≥ {EDGE_FRACTION}·action_scale; "
        f"learner ms/iter: median learner.update wall time ({params['workers']} runs in "
        f"parallel on {os.cpu_count()} cores).",
    ]
    return "\n".join(lines)


def plot_trajectories(df: pd.DataFrame, allocators: list[str], path: Path) -> None:
    """Reward surface of the differential game with each run's deterministic joint actions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rllib_hatrpo.envs import GLOBAL_OPTIMUM, LOCAL_OPTIMUM, differential_game_reward

    diff = df[df["game"] == "differential"]
    allocators = [a for a in allocators if a in set(diff["allocator"])]
    if not allocators:
        return
    grid = np.linspace(-10.0, 10.0, 301)
    a1, a2 = np.meshgrid(grid, grid)
    surface = differential_game_reward(a1, a2)
    colors = dict(zip(ALLOCATORS, ("tab:blue", "tab:orange", "tab:green"), strict=True))
    fig, axes = plt.subplots(1, len(allocators), figsize=(5.2 * len(allocators), 5), squeeze=False)
    for ax, allocator in zip(axes[0], allocators, strict=True):
        contour = ax.contourf(a1, a2, surface, levels=30, cmap="viridis")
        for _, run in diff[diff["allocator"] == allocator].groupby("seed"):
            run = run.sort_values("iteration")
            x, y = run["action_agent_0"], run["action_agent_1"]
            color = colors.get(allocator, "white")
            ax.plot(x, y, "-", color=color, lw=1.2, alpha=0.9)
            ax.plot(x.iloc[0], y.iloc[0], "o", color="white", ms=3)
            ax.plot(x.iloc[-1], y.iloc[-1], "o", color=color, mec="black", ms=6)
        ax.plot(GLOBAL_OPTIMUM.a1, GLOBAL_OPTIMUM.a2, "r*", ms=14, label="global optimum")
        ax.plot(LOCAL_OPTIMUM.a1, LOCAL_OPTIMUM.a2, "wx", ms=10, mew=2, label="local optimum")
        n = diff[diff["allocator"] == allocator]["seed"].nunique()
        ax.set(title=f"{allocator} ({n} seeds)", xlabel="a1 (agent_0)")
        if ax is axes[0][0]:
            ax.set_ylabel("a2 (agent_1)")
        ax.set_xlim(-10, 10)
        ax.set_ylim(-10, 10)
        ax.legend(loc="lower left", fontsize=8)
    fig.colorbar(contour, ax=axes[0].tolist(), shrink=0.85, label="R(a1, a2)")
    fig.suptitle("Differential game: deterministic joint action per iteration (dot = end)")
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_budget_shares(df: pd.DataFrame, games: list[str], path: Path) -> None:
    """Per-agent δ_i/δ_total (solid) and KL_i/δ_total (dashed), mean over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    allocators = [a for a in ("kkt", "greedy") if a in set(df["allocator"])]
    games = [g for g in games if g in set(df["game"])]
    if not allocators or not games:
        return
    trained = df[df["iteration"] >= 1]
    fig, axes = plt.subplots(
        len(games),
        len(allocators),
        figsize=(5.5 * len(allocators), 3.2 * len(games)),
        squeeze=False,
        sharex=True,
        sharey=True,
    )
    for i, game in enumerate(games):
        for j, allocator in enumerate(allocators):
            ax = axes[i][j]
            sub = trained[(trained["game"] == game) & (trained["allocator"] == allocator)]
            mean = sub.groupby("iteration").mean(numeric_only=True)
            for aid, color in zip(AGENTS, ("tab:red", "tab:purple"), strict=True):
                if mean.empty:
                    continue
                ax.plot(
                    mean.index,
                    mean[f"kl_budget_{aid}"] / mean["total_kl_budget"],
                    color=color,
                    label=f"δ_i share {aid}",
                )
                ax.plot(
                    mean.index,
                    mean[f"kl_{aid}"] / mean["total_kl_budget"],
                    "--",
                    color=color,
                    alpha=0.7,
                    label=f"KL_i share {aid}",
                )
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            n = sub["seed"].nunique()
            ax.set(title=f"{game} / {allocator} ({n} seeds)", ylim=(0, 1.05))
            if i == len(games) - 1:
                ax.set_xlabel("iteration")
            if j == 0:
                ax.set_ylabel("share of δ_total")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_returns(df: pd.DataFrame, games: list[str], allocators: list[str], path: Path) -> None:
    """Mean ± std (over seeds) of the batch team return per iteration, per game."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    games = [g for g in games if g in set(df["game"])]
    if not games:
        return
    trained = df[df["iteration"] >= 1]
    fig, axes = plt.subplots(1, len(games), figsize=(5 * len(games), 3.6), squeeze=False)
    for ax, game in zip(axes[0], games, strict=True):
        for allocator in allocators:
            sub = trained[(trained["game"] == game) & (trained["allocator"] == allocator)]
            if sub.empty:
                continue
            stats = sub.groupby("iteration")["team_return"].agg(["mean", "std"])
            ax.plot(stats.index, stats["mean"], label=allocator)
            ax.fill_between(
                stats.index, stats["mean"] - stats["std"], stats["mean"] + stats["std"], alpha=0.2
            )
        ax.set(title=game, xlabel="iteration", ylabel="team return (batch mean)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def report(args: argparse.Namespace, params: dict[str, Any]) -> str:
    """Writes summary.csv/.md and the plots from runs.csv; returns the markdown table."""
    df = pd.read_csv(args.out / "runs.csv")
    df = df[df["seed"].isin(args.seeds)]
    df = df[df["game"].isin(args.games) & df["allocator"].isin(args.allocators)]
    summary = summarize(df, args.games, args.allocators, params)
    summary.to_csv(args.out / "summary.csv", index=False)
    table = markdown_table(summary, params)
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
    p.add_argument("--games", nargs="+", choices=GAMES, default=list(GAMES))
    p.add_argument("--allocators", nargs="+", choices=ALLOCATORS, default=list(ALLOCATORS))
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
