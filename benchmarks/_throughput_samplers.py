"""The sampler phase of the throughput benchmark (``throughput.py --samplers``): env steps per
CPU-second and per wall-second of raw envs, RLlib's runner and ``TeamEnvRunner``.

Per task and N (envs per EnvRunner), in one process, interleaved (round-robin, the first variant
rotated every repeat), uniform random actions for the raw envs and the policy's for the
runners (``sample(num_timesteps=...)`` of an in-process EnvRunner, no Ray cluster):

- ``raw_gymnasium`` (MaMuJoCo only): N gymnasium ``HalfCheetah-v5`` envs, what MaMuJoCo
  steps inside: the ceiling;
- ``raw_pettingzoo``: N PettingZoo parallel envs (``mamujoco_v1`` or mpe2) stepped with dicts;
- ``raw_fast`` (simple_spread only): ``MPESpreadVectorEnv`` stepped directly with N actions
  per agent, the ceiling of its ``team_fast``;
- ``rllib_runner``: RLlib's ``MultiAgentEnvRunner``, one ``sample()`` call per measurement
  (as a local EnvRunner samples a whole train batch);
- ``team_pettingzoo``: ``TeamEnvRunner`` over the PettingZoo env (``fast_vector=False``);
- ``team_fast``: ``TeamEnvRunner`` with the vectorised fast path (``MaMuJoCoVectorEnv`` or
  ``MPESpreadVectorEnv``).

The "× raw" column relates each runner to its ceiling: ``raw_gymnasium`` for MaMuJoCo's
``team_fast``, ``raw_fast`` for simple_spread's, ``raw_pettingzoo`` otherwise (and for
``raw_fast`` itself, its speed-up over the PettingZoo env).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
from _common import rotate
from mamujoco_vector import _stepper as mamujoco_stepper

SAMPLER_TASKS = ("2x3", "6x1", "spread")
RUNNER_VARIANTS = ("rllib_runner", "team_pettingzoo", "team_fast")
ACTION_POOL = 64


def variants(task: str) -> list[str]:
    """The variants measured for ``task`` (the fast path and gymnasium only for MaMuJoCo)."""
    if task == "spread":
        return ["raw_pettingzoo", "raw_fast", *RUNNER_VARIANTS]
    return ["raw_gymnasium", "raw_pettingzoo", *RUNNER_VARIANTS]


def _ceiling(task: str, variant: str) -> str:
    """The raw variant the "× raw" column divides ``variant``'s rate by."""
    if variant == "team_fast":
        return "raw_fast" if task == "spread" else "raw_gymnasium"
    return "raw_pettingzoo"


def env_and_config(task: str, fast_vector: bool = True) -> tuple[type, dict[str, Any]]:
    from rllib_hatrpo.envs import MaMuJoCoEnv, MPEEnv

    if task == "spread":
        return MPEEnv, {"scenario": "simple_spread_v3", "fast_vector": fast_vector}
    return MaMuJoCoEnv, {
        "scenario": "HalfCheetah",
        "agent_conf": task,
        "agent_obsk": 1,
        "fast_vector": fast_vector,
    }


def _raw_pettingzoo(task: str, num_envs: int) -> tuple[Callable[[int], int], Callable]:
    env_cls, cfg = env_and_config(task)
    envs = [env_cls(cfg).env for _ in range(num_envs)]  # the PettingZoo env PettingZooEnv wraps
    agents = list(envs[0].possible_agents)
    for index, env in enumerate(envs):
        env.reset(seed=index)
    spaces = {aid: envs[0].action_space(aid) for aid in agents}
    for space in spaces.values():
        space.seed(0)
    pool = [{aid: spaces[aid].sample() for aid in agents} for _ in range(ACTION_POOL)]

    def step(i: int) -> int:
        for env in envs:
            _, _, terminated, truncated, _ = env.step(pool[i % ACTION_POOL])
            if not env.agents or any(terminated.values()) or any(truncated.values()):
                env.reset()
        return num_envs

    return step, lambda: [env.close() for env in envs]


def _raw_fast(task: str, num_envs: int) -> tuple[Callable[[int], int], Callable]:
    from rllib_hatrpo.envs.mpe_vector import MPESpreadVectorEnv

    _, cfg = env_and_config(task)
    venv = MPESpreadVectorEnv(cfg, num_envs)
    venv.reset(range(num_envs), range(num_envs))
    rng = np.random.default_rng(0)
    pool = [
        {aid: rng.integers(0, venv.action_spaces[aid].n, num_envs) for aid in venv.possible_agents}
        for _ in range(ACTION_POOL)
    ]

    def step(i: int) -> int:
        ended = np.flatnonzero(venv.step(pool[i % ACTION_POOL]).truncated)
        if ended.size:
            venv.reset(ended.tolist(), [None] * ended.size)
        return num_envs

    return step, venv.close


def _runner(variant: str, task: str, num_envs: int, seed: int) -> tuple[Callable, Callable]:
    from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

    from rllib_hatrpo import HATRPOConfig
    from rllib_hatrpo.team_env_runner import TeamEnvRunner

    env_cls, cfg = env_and_config(task, fast_vector=variant == "team_fast")
    runner_cls = MultiAgentEnvRunner if variant == "rllib_runner" else TeamEnvRunner
    config = (
        HATRPOConfig()
        .environment(env_cls, env_config=cfg)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=num_envs, env_runner_cls=runner_cls)
        .debugging(seed=seed)
    )
    config.validate()
    runner = runner_cls(config=config)
    if variant == "team_fast":
        from rllib_hatrpo.envs.mamujoco_vector import MaMuJoCoVectorEnv
        from rllib_hatrpo.envs.mpe_vector import MPESpreadVectorEnv

        fast_cls = MPESpreadVectorEnv if task == "spread" else MaMuJoCoVectorEnv
        assert isinstance(runner._team_env, fast_cls), "fast path not taken"

    def step(i: int, env_steps: int = num_envs) -> int:
        """One ``sample()`` call of ``env_steps`` (a local EnvRunner samples a whole train
        batch in one call)."""
        return sum(len(episode) for episode in runner.sample(num_timesteps=env_steps))

    return step, runner.stop


def _stepper(variant: str, task: str, num_envs: int, seed: int) -> tuple[Callable, Callable]:
    if variant == "raw_gymnasium":
        step, close = mamujoco_stepper("gymnasium", task, num_envs)
        return (lambda i: step(i) or num_envs), close
    if variant == "raw_pettingzoo":
        return _raw_pettingzoo(task, num_envs)
    if variant == "raw_fast":
        return _raw_fast(task, num_envs)
    return _runner(variant, task, num_envs, seed)


def sampler_rates(
    task: str, num_envs: int, env_steps: int, repeats: int, seed: int = 0
) -> list[dict[str, Any]]:
    """Rows (task, variant, N, repeat, env_steps, cpu_s, wall_s) of the interleaved variants.

    Every measurement runs at least ``env_steps`` env steps; one untimed call warms each up.
    """
    steppers = {v: _stepper(v, task, num_envs, seed) for v in variants(task)}
    for step, _ in steppers.values():
        step(0)
    rows = []
    for repeat in range(repeats):
        for variant in rotate(variants(task), repeat):
            step = steppers[variant][0]
            steps, i = 0, 0
            cpu0, wall0 = time.process_time(), time.perf_counter()
            if variant in RUNNER_VARIANTS:
                steps = step(0, env_steps)
            while steps < env_steps:
                steps += step(i)
                i += 1
            rows.append(
                {
                    "task": task,
                    "variant": variant,
                    "num_envs": num_envs,
                    "repeat": repeat,
                    "env_steps": steps,
                    "cpu_s": time.process_time() - cpu0,
                    "wall_s": time.perf_counter() - wall0,
                }
            )
    for _, close in steppers.values():
        close()
    return rows


def sampler_table(rows: list[dict[str, Any]]) -> str:
    """Median env steps per CPU-second (and per wall-second) per task, N and variant, with the
    ratios the targets are stated in."""
    import pandas as pd

    df = pd.DataFrame(rows)
    df["per_cpu_s"] = df.env_steps / df.cpu_s
    df["per_wall_s"] = df.env_steps / df.wall_s
    med = df.groupby(["task", "num_envs", "variant"])[["per_cpu_s", "per_wall_s"]].median()
    lines = [
        "| task | N | variant | steps / CPU-s | steps / wall-s | × rllib_runner (CPU) "
        "| × raw (CPU) |",
        "|---|---|---|---|---|---|---|",
    ]
    for (task, n), group in med.groupby(level=[0, 1]):
        group = group.droplevel([0, 1])
        rllib = group.per_cpu_s.get("rllib_runner", np.nan)
        for variant, values in group.iterrows():
            raw = _ceiling(task, variant)
            lines.append(
                f"| {task} | {n} | {variant} | {values.per_cpu_s:,.0f} | "
                f"{values.per_wall_s:,.0f} | {values.per_cpu_s / rllib:.2f} | "
                f"{values.per_cpu_s / group.per_cpu_s.get(raw, np.nan):.2f} |"
            )
    return "\n".join(lines)
