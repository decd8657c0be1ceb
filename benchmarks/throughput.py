"""Throughput benchmark: HATRPO (uniform), HATRPO-W (kkt), HATRPO-G (greedy) and RLlib's PPO
on Multi-Agent MuJoCo HalfCheetah 2x3 and 6x1, side by side in one run.

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
   (``--pipeline-runners`` remote EnvRunners each, default 1, idle while another method
   trains; 0: each samples in the driver, as the tuned examples do), each runs 1 untimed
   warm-up iteration, then ``--iters`` timed iterations, round-robin over methods with the
   starting method rotated every round, so machine noise hits all methods alike. Per
   iteration:

   - ``iter_s``: wall time of ``algo.train()`` (``time.perf_counter``; ``time_this_iter_s``
     is kept next to it as a cross-check);
   - ``env_steps``: the increase of ``result["env_runners"]["num_env_steps_sampled_lifetime"]``
     (never PPO's trained-steps counter, which counts every minibatch pass of every epoch);
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
``--ppo-minibatch``; 5 × 500 by default), printed in the output.

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

Code: this file (command line), ``_throughput_phases.py`` (the measurements),
``_throughput_report.py`` (summary and tables) and ``_common.py`` (helpers shared with
``toy_games.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd
from _common import quiet_logs
from _throughput_phases import (
    METHODS,
    TASKS,
    learner_only,
    pipeline,
    raw_env_rate,
    scaling,
)
from _throughput_report import (
    ceilings_table,
    environment_info,
    scaling_table,
    summarise,
    write_summary,
)
from _throughput_samplers import SAMPLER_TASKS, sampler_rates, sampler_table


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=TASKS)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--iters", type=int, default=3, help="timed iterations per method")
    parser.add_argument("--batch", type=int, default=2000, help="train_batch_size_per_learner")
    parser.add_argument("--num-envs", type=int, default=4, help="envs per EnvRunner")
    parser.add_argument(
        "--pipeline-runners",
        type=int,
        default=1,
        help="remote EnvRunners per method in the pipeline (0: sample in the driver)",
    )
    parser.add_argument(
        "--fvp-subsample",
        type=int,
        default=None,
        help="fvp_subsample of the HATRPO methods (default: the package's)",
    )
    parser.add_argument("--out", type=Path, default=Path("results/throughput"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ppo-epochs", type=int, default=5)
    parser.add_argument("--ppo-minibatch", type=int, default=500)
    parser.add_argument("--learner-repeats", type=int, default=5)
    parser.add_argument("--env-steps", type=int, default=5000, help="raw env rate: steps")
    parser.add_argument("--torch-threads", type=int, default=1, help="driver torch threads")
    parser.add_argument("--learner-only", action="store_true", help="skip the Ray pipeline")
    parser.add_argument(
        "--sampler-tasks",
        nargs="*",
        default=list(SAMPLER_TASKS),
        choices=SAMPLER_TASKS,
        help="tasks of the sampler phase (none: skip it)",
    )
    parser.add_argument("--sampler-envs", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--sampler-steps", type=int, default=4000, help="env steps per measurement")
    parser.add_argument("--sampler-repeats", type=int, default=3)
    parser.add_argument("--samplers-only", action="store_true", help="only the sampler phase")
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
    quiet_logs(("ray", "ray.rllib", "rllib_hatrpo", "gymnasium_robotics"))
    import torch

    torch.set_num_threads(args.torch_threads)
    args.out.mkdir(parents=True, exist_ok=True)
    start, load_start = time.perf_counter(), os.getloadavg()
    sampler_rows: list[dict[str, Any]] = []
    for task in args.sampler_tasks:
        for num_envs in args.sampler_envs:
            print(f"[{task}] samplers, N = {num_envs}", flush=True)
            sampler_rows += sampler_rates(
                task, num_envs, args.sampler_steps, args.sampler_repeats, args.seed
            )
    if sampler_rows:
        pd.DataFrame(sampler_rows).to_csv(args.out / "samplers.csv", index=False)
        samplers = sampler_table(sampler_rows)
        (args.out / "samplers.md").write_text(f"Load average {os.getloadavg()}\n\n{samplers}\n")
        print(f"\nSamplers (median of {args.sampler_repeats}):\n{samplers}", flush=True)
    if args.samplers_only:
        return
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
