"""Fisher-vector products on every k-th valid row (``training(fvp_subsample=k)``): cost and effect.

Two measurements on the tuned MaMuJoCo HalfCheetah tasks (``tuned_examples/mamujoco/``), both
at ``agent_obsk`` 0 (:data:`AGENT_OBSK`, as their committed results were measured):

1. **Update time** (default): one fixed batch (``--batch`` env steps, 4,000) sampled once;
   one learner per k, all with the same initial weights and learner state (so the same agent
   order); ``learner.update`` timed for each k, interleaved round-robin ``--repeats`` times,
   in CPU seconds (``time.process_time``) and wall seconds, with the 1-minute load average
   (``os.getloadavg``) before each update. On the same batch, each agent's line-search
   outcome (accepted, achieved KL, tries) is compared with k = 1's. Writes ``timing.csv``
   (one row per update) and ``timing.md`` to ``--out``.
2. **Learning campaign** (``--campaign``): uniform HATRPO, ``--seeds`` × ``--ks`` ×
   ``--tasks``, ``--env-steps`` each, one run at a time (sampling in the driver), every
   other setting the tuned example's. A finished run's per-iteration rows (the ``hatrpo
   train`` ``metrics.csv`` columns) are copied to ``--out/<task>_k<k>_seed<s>.csv``;
   ``summary.md`` (final team return mean ± std over seeds per task and k, the mean of each
   run's last 10 % of iterations; learner seconds per iteration) is rewritten after each.
   Resuming: runs train in ``--work/<task>/k<k>/seed_<s>/`` with a checkpoint every
   ``--checkpoint-every`` iterations; a rerun of the same command skips finished runs and
   continues an unfinished one from its last checkpoint. ``campaign.json`` holds the plan,
   and a rerun with another one stops with an error.

How to run (from the repository root; ``OMP_NUM_THREADS=1`` for comparable timings)::

    OMP_NUM_THREADS=1 python benchmarks/fvp_subsample.py --ks 1 5 10 --repeats 3
    nohup nice -n 10 python benchmarks/fvp_subsample.py --campaign \
        > results/fvp_subsample.log 2>&1 &
    python benchmarks/fvp_subsample.py --campaign --report-only

Measured (December 2026, 2 shared cores, load ≈ 5, ``OMP_NUM_THREADS=1``, 4,000 env steps,
medians of 3): one learner update of HalfCheetah 6x1 takes 2.71 CPU-s at k = 1, 0.84 at
k = 5, 0.61 at k = 10; of 2x3, 1.00, 0.37 and 0.29 CPU-s. Every agent's step is accepted
at every k on that batch. ``docs/data/fvp_subsample/timing.md`` has the tables.
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _common import actor_ids, markdown_table, peek, push_actor_weights, quiet_logs, rotate
from compare import load_tasks

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("halfcheetah_6x1", "halfcheetah_2x3")
#: The campaign's settings, fixed before it runs: k = 1 (full batch) and the recommended k.
CAMPAIGN_KS = (1, 5)
CAMPAIGN_SEEDS = (0, 1, 2)
CAMPAIGN_ENV_STEPS = 1_000_000
#: The observation depth both measurements ran at (the committed results): each agent sees
#: its own joints only. The HalfCheetah 6x1 tuned example has since moved to 1.
AGENT_OBSK = 0
PER_AGENT = ("line_search_accepted", "kl", "kl_budget", "line_search_steps", "update_rank")


def load_task(name: str) -> Any:
    """The tuned example ``name``'s ``TASK``, at :data:`AGENT_OBSK`."""
    task = load_tasks()[name]
    return dataclasses.replace(task, env_config={**task.env_config, "agent_obsk": AGENT_OBSK})


def task_config(name: str, k: int, seed: int, batch: int | None = None) -> Any:
    """The tuned example's uniform HATRPO config with ``fvp_subsample=k``."""
    training = {"fvp_subsample": k}
    if batch is not None:
        training["train_batch_size_per_learner"] = batch
    return load_task(name).config("uniform", seed=seed, **training)


# --------------------------------------------------------------------------------------------
# 1. Update time on one fixed batch
# --------------------------------------------------------------------------------------------


def time_updates(task: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """``learner.update`` per k on one batch, interleaved; one row per timed update."""
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
    from ray.rllib.utils.metrics import ALL_MODULES

    configs = {k: task_config(task, k, args.seed, args.batch) for k in args.ks}
    for config in configs.values():
        config.validate()
    runner = MultiAgentEnvRunner(config=configs[args.ks[0]])
    learners: dict[int, tuple[Any, dict]] = {}
    first = None
    for k, config in configs.items():
        learner = config.build_learner(spaces=runner.get_spaces())
        if first is None:
            first = learner
        else:  # the same initial weights for every k
            learner.module.set_state(copy.deepcopy(first.module.get_state()))
        learners[k] = (learner, copy.deepcopy(learner.get_state()))
    push_actor_weights(first, runner)
    runner.sample(num_timesteps=args.batch)  # warm-up: env resets, first forward passes
    episodes = runner.sample(num_timesteps=args.batch)
    runner.stop()
    env_steps = sum(len(e) for e in episodes)
    for learner, state in learners.values():  # warm-up update (first-call costs), not timed
        learner.set_state(copy.deepcopy(state))
        learner.update(episodes=copy.deepcopy(episodes), timesteps={})
    rows = []
    for repeat in range(args.repeats):
        for position, k in enumerate(rotate(args.ks, repeat)):
            learner, state = learners[k]
            learner.set_state(copy.deepcopy(state))
            batch = copy.deepcopy(episodes)
            load = os.getloadavg()[0]
            cpu0, wall0 = time.process_time(), time.perf_counter()
            results = learner.update(episodes=batch, timesteps={})
            wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
            row = {
                "task": task,
                "k": k,
                "repeat": repeat,
                "order_position": position,
                "env_steps": env_steps,
                "update_cpu_s": cpu,
                "update_wall_s": wall,
                "load_1min": load,
                "kl_total": peek(results[ALL_MODULES].get("kl_total")),
            }
            for mid in actor_ids(learner):
                for key in PER_AGENT:
                    row[f"{mid}/{key}"] = peek(results[mid].get(key))
            rows.append(row)
            print(f"  {task} k={k} repeat {repeat}: {cpu:.2f} CPU-s, {wall:.2f} s", flush=True)
    return rows


def timing_report(df: Any, ks: list[int]) -> str:
    """Median update time per (task, k) and each agent's line-search outcome against k = 1."""
    lines = []
    for task, frame in df.groupby("task", sort=False):
        frame = frame.dropna(axis="columns", how="all")  # the other task's agents
        agents = sorted({c.split("/")[0] for c in frame.columns if "/" in c})
        head = ["k", "update CPU-s", "wall-s", "× k=1 (wall)", "load (1 min)", "Σ KL"]
        base = frame[frame.k == ks[0]].update_wall_s.median()
        table = [
            [
                str(k),
                f"{g.update_cpu_s.median():.2f}",
                f"{g.update_wall_s.median():.2f}",
                f"{g.update_wall_s.median() / base:.2f}",
                f"{g.load_1min.mean():.2f}",
                f"{g.kl_total.iloc[0]:.5f}",
            ]
            for k, g in frame.groupby("k", sort=False)
        ]
        steps = [
            [str(k)]
            + [
                "{:.0f}/{:.5f}/{:.0f}".format(
                    *(g[f"{a}/{key}"].iloc[0] for key in (*PER_AGENT[:2], "line_search_steps"))
                )
                for a in agents
            ]
            for k, g in frame.groupby("k", sort=False)
        ]
        lines += [
            f"### {task} ({int(frame.env_steps.iloc[0])} env steps, medians of "
            f"{frame.repeat.nunique()} interleaved repeats)",
            "",
            markdown_table(head, table),
            "",
            "Per agent: accepted / achieved KL / line-search tries (KL budget "
            f"{frame[f'{agents[0]}/kl_budget'].iloc[0]:g})",
            "",
            markdown_table(["k", *agents], steps),
            "",
        ]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# 2. The learning campaign
# --------------------------------------------------------------------------------------------


def train_run(task: str, k: int, seed: int, run_dir: Path, args: argparse.Namespace) -> Path:
    """Trains (or continues) one run to ``--env-steps``; returns its ``metrics.csv``."""
    from rllib_hatrpo.experiments.loop import StopCriteria, train_iterations
    from rllib_hatrpo.experiments.records import MetricsCsv, save_checkpoint_atomically
    from rllib_hatrpo.experiments.resume import plan_seed, restore_seed

    csv_path, checkpoint = run_dir / "metrics.csv", run_dir / "checkpoint"
    if csv_path.exists() and not any(
        p.exists() for p in (checkpoint, checkpoint.with_name("checkpoint.old"))
    ):
        csv_path.unlink()  # stopped before its first checkpoint: start again
    plan = plan_seed(run_dir, seed)
    algo = task_config(task, k, seed).build_algo()
    stop = StopCriteria(timesteps=args.env_steps)
    try:
        rows = restore_seed(algo, plan)
        if not stop.finished(rows):
            agents = sorted(algo.config.policies)
            steps = train_iterations(
                algo, stop, checkpoint_every=args.checkpoint_every, restored=list(rows)
            )
            with MetricsCsv(csv_path, agents, append=bool(rows)) as csv:
                for step in steps:
                    csv.append(step.row)
                    if step.checkpoint_due or step.stop_reason:
                        save_checkpoint_atomically(algo, checkpoint)
                    print(
                        f"  {task} k={k} seed {seed}: {int(step.row['env_steps'])} env steps, "
                        f"return {step.row['team_return']:.1f}",
                        flush=True,
                    )
    finally:
        algo.stop()
    return csv_path


def campaign(args: argparse.Namespace) -> None:
    """Every (task, seed, k) run not finished yet, seed by seed, k alternating."""
    import ray

    from rllib_hatrpo.experiments.plans import PlanMismatchError, check_same_plan

    plan = {
        "tasks": list(args.tasks),
        "ks": list(args.ks),
        "seeds": list(args.seeds),
        "env_steps": args.env_steps,
    }
    try:
        check_same_plan(
            args.out / "campaign.json",
            plan,
            what="an fvp_subsample campaign",
            hint="Rerun with the same --tasks/--ks/--seeds/--env-steps, or choose another --out.",
        )
    except PlanMismatchError as err:
        raise SystemExit(f"--out {args.out}: {err}") from err
    if not args.report_only:
        ray.init(num_cpus=2, include_dashboard=False, ignore_reinit_error=True)
        for task in args.tasks:
            for seed in args.seeds:
                for k in args.ks:
                    final = args.out / f"{task}_k{k}_seed{seed}.csv"
                    if final.exists():
                        print(f"{final.name}: finished, skipped", flush=True)
                        continue
                    run_dir = args.work / task / f"k{k}" / f"seed_{seed}"
                    shutil.copyfile(train_run(task, k, seed, run_dir, args), final)
                    write_campaign_report(args)
        ray.shutdown()
    print(write_campaign_report(args))


def write_campaign_report(args: argparse.Namespace) -> str:
    """``summary.md``: final team return mean ± std over the finished seeds per task and k."""
    import pandas as pd

    from rllib_hatrpo.experiments.records import LEARNER_UPDATE_TIME_S
    from rllib_hatrpo.experiments.summaries import final_return

    rows = []
    for task in args.tasks:
        for k in args.ks:
            frames = [
                pd.read_csv(args.out / f"{task}_k{k}_seed{s}.csv")
                for s in args.seeds
                if (args.out / f"{task}_k{k}_seed{s}.csv").exists()
            ]
            if not frames:
                continue
            finals = np.array([final_return(f) for f in frames])
            update_s = np.mean([f[LEARNER_UPDATE_TIME_S].mean() for f in frames])
            rows.append(
                [
                    task,
                    str(k),
                    f"{len(frames)}/{len(args.seeds)}",
                    f"{finals.mean():.1f} ± {finals.std():.1f}",
                    f"{update_s:.2f}",
                ]
            )
    head = ["task", "k", "seeds done", "final team return (mean ± std)", "learner s / iter"]
    text = (
        f"# fvp_subsample campaign: {args.env_steps} env steps, seeds {list(args.seeds)}\n\n"
        "Uniform HATRPO with the tuned examples' settings; final team return = mean of each "
        "run's last 10 % of iterations, mean ± population std over seeds.\n\n"
        + markdown_table(head, rows)
        + "\n"
    )
    (args.out / "summary.md").write_text(text, encoding="utf-8")
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--campaign", action="store_true", help="the learning comparison")
    parser.add_argument("--report-only", action="store_true", help="tables from the CSVs only")
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--ks", nargs="+", type=int, help="default: 1 5 10, campaign: 1 5")
    parser.add_argument("--seeds", nargs="+", type=int, default=list(CAMPAIGN_SEEDS))
    parser.add_argument("--env-steps", type=int, default=CAMPAIGN_ENV_STEPS)
    parser.add_argument("--checkpoint-every", type=int, default=10)
    parser.add_argument("--batch", type=int, default=4000, help="timing: env steps")
    parser.add_argument("--repeats", type=int, default=3, help="timing: interleaved rounds")
    parser.add_argument("--seed", type=int, default=0, help="timing: the learners' seed")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "data" / "fvp_subsample")
    parser.add_argument("--work", type=Path, default=ROOT / "results" / "fvp_subsample")
    args = parser.parse_args(argv)
    args.ks = args.ks or list(CAMPAIGN_KS if args.campaign else (1, 5, 10))
    quiet_logs(["ray", "ray.rllib", "rllib_hatrpo"])
    args.out.mkdir(parents=True, exist_ok=True)
    if args.campaign:
        campaign(args)
        return 0
    import pandas as pd

    if args.report_only:
        df = pd.read_csv(args.out / "timing.csv")
    else:
        df = pd.DataFrame([row for task in args.tasks for row in time_updates(task, args)])
        df.to_csv(args.out / "timing.csv", index=False)
    text = timing_report(df, list(args.ks))
    (args.out / "timing.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
