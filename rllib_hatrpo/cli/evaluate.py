"""``hatrpo evaluate``: run a checkpoint's policies for a few episodes and print the return.

    hatrpo evaluate runs/spread/seed_0/checkpoint --episodes 10 --render spread.gif

Only the actors and the env are rebuilt from the checkpoint
(:mod:`rllib_hatrpo.experiments.evaluation`): no Ray cluster, no learner, no EnvRunners.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from rllib_hatrpo.cli.args import Group, add_groups, flag, flag_namer, int_at_least
from rllib_hatrpo.cli.common import EXIT_OK, as_usage_errors, say
from rllib_hatrpo.experiments.evaluation import DEFAULT_VIDEO_WIDTH


def groups() -> tuple[Group, ...]:
    """The arguments of ``hatrpo evaluate``."""
    return (
        Group(
            "evaluation",
            (
                flag(
                    "checkpoint",
                    type=Path,
                    metavar="CHECKPOINT",
                    help="the checkpoint directory (or the seed directory holding it)",
                ),
                flag(
                    "--episodes",
                    type=int_at_least(1),
                    default=10,
                    metavar="N",
                    help="default: %(default)s",
                ),
                flag(
                    "--seed",
                    type=int,
                    default=0,
                    metavar="S",
                    help="episode k resets the env with seed S + k; default: %(default)s",
                ),
                flag(
                    "--env",
                    metavar="NAME|MODULE:OBJ",
                    help="build the env from this instead of the checkpoint's env (called "
                    "with the checkpoint's env_config): needed when training registered the "
                    "env by name with ray.tune.register_env; a module in the current "
                    "directory is found",
                ),
                flag("--explore", action="store_true", help="sample actions instead of the mode"),
                flag(
                    "--render",
                    type=Path,
                    metavar="OUT.gif|OUT.mp4",
                    help="record the first episode (envs with render_mode='rgb_array': "
                    "mamujoco, mpe)",
                ),
                flag(
                    "--render-width",
                    type=int_at_least(16),
                    default=DEFAULT_VIDEO_WIDTH,
                    metavar="PIXELS",
                    help="shrink recorded frames to this width; default: %(default)s (a GIF "
                    "also keeps at most 15 frames per second; MP4 is far smaller)",
                ),
                flag(
                    "--render-frames",
                    type=int_at_least(1),
                    default=500,
                    metavar="N",
                    help="record at most N frames; default: %(default)s",
                ),
            ),
        ),
    )


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Adds ``evaluate`` to the ``hatrpo`` subcommands."""
    parser = commands.add_parser(
        "evaluate",
        help="run a checkpoint's policies for a few episodes",
        description="Run the actors of a `hatrpo train` checkpoint for N episodes and print "
        "the team return (mean ± std). Actions are deterministic (the distribution's mode) "
        "unless --explore is given. Only the actors and the env are rebuilt: no Ray cluster.",
    )
    parser.set_defaults(run=run, parser=parser)
    return add_groups(parser, groups())


def run(args: argparse.Namespace) -> int:
    """``hatrpo evaluate``: loads the actors, runs the episodes, prints (and records)."""
    from rllib_hatrpo.experiments.evaluation import (
        check_video_path,
        load_checkpoint_policies,
        make_env,
        prepare_frames,
        render_fps,
        run_episodes,
        write_video,
    )

    with as_usage_errors(flag_namer(groups())):
        if args.render is not None:
            check_video_path(args.render)
            if not os.environ.get("DISPLAY"):
                # Headless: MuJoCo's default GLFW backend needs a display; EGL renders without.
                os.environ.setdefault("MUJOCO_GL", "egl")
        start = time.monotonic()
        policies = load_checkpoint_policies(args.checkpoint)
        env = make_env(policies.config, render=args.render is not None, env=args.env)
        frames: list[np.ndarray] | None = [] if args.render is not None else None
        try:
            returns = run_episodes(
                policies, env, args.episodes, args.seed, args.explore, frames, args.render_frames
            )
        finally:
            env.close()
    for episode, value in enumerate(returns, 1):
        print(f"episode {episode}: team return {value:.3f}")
    mode = "sampled" if args.explore else "deterministic"
    episodes = f"{len(returns)} episode" + ("" if len(returns) == 1 else "s")
    say(
        f"team return: {np.mean(returns):.3f} ± {np.std(returns):.3f} over {episodes} "
        f"({mode} actions; {policies.path}; {time.monotonic() - start:.1f} s)"
    )
    if frames:
        frames, fps = prepare_frames(
            frames,
            render_fps(env),
            width=args.render_width,
            gif=args.render.suffix.lower() == ".gif",
        )
        write_video(frames, args.render, fps)
        print(f"wrote {args.render} ({len(frames)} frames of episode 1)")
    return EXIT_OK
