"""HATRPO on Multi-Agent MuJoCo Ant 4x2 (four agents, one leg of two joints each).

{usage}

Settings: HARL's tuned HATRPO values for this task
(``tuned_configs/mamujoco/Ant-v2-4x2/hatrpo``): kl_threshold 0.005, actor and critic MLP
[128, 128, 128], γ 0.99, λ 0.95, critic lr 5e-4, 5 critic epochs, value normalisation,
``agent_obsk`` 0 (39 observations and 2 actions per agent; a 105-dim global state). Episodes
last up to 1,000 steps and end early when the ant's torso leaves its healthy height range.
4,000 env steps per iteration from 4 envs in one EnvRunner.

Results to expect
-----------------
{expected}
"""

import sys

from rllib_hatrpo.cli.tuned_example import run_tuned_example
from rllib_hatrpo.experiments.tuned import TunedTask

TASK = TunedTask(
    name="ant_4x2",
    env="mamujoco",
    env_config={"scenario": "Ant", "agent_conf": "4x2", "agent_obsk": 0},
    env_steps=200_000,
    training={
        "kl_threshold": 0.005,
        "actor_hidden_sizes": [128, 128, 128],
        "critic_hidden_sizes": [128, 128, 128],
    },
    episodes_for_smoothing=8,
    expected={"uniform": 244.7, "kkt": 208.0, "greedy": 196.0, "ppo": 77.4},
    expected_note=(
        "Measured: the first 200,000 env steps of the MaMuJoCo campaign's 2M-step runs "
        "(`benchmarks/compare.py`, docs/results.md; two or three runs at a time on a shared 2-core "
        "CPU, ray 2.60.0, torch 2.13.0, gymnasium-robotics 1.4.2, mujoco 4.0.0), seeds 0-4. "
        "Final team return (mean of the last 10 % of iterations), mean ± std "
        "over seeds: uniform 367.3 ± 25.1 (lowest seed 348.1), kkt 346.0 ± 28.5 (299.1), "
        "greedy 321.7 ± 32.4 (283.0), RLlib PPO 250.5 ± 87.2 (125.0); a uniformly random "
        "policy scores -65.1. Threshold = the lowest seed minus 25 % of its distance from the "
        "random policy, rounded down to 0.1 (`python benchmarks/tuned_expectations.py`, which "
        "writes docs/data/tuned_expectations.md). At 2M env steps the same runs reach 1,700.7 "
        "± 90.3 (uniform), 1,807.9 ± 304.3 (kkt), 1,625.3 ± 48.8 (greedy) and 568.1 ± 315.0 "
        "(PPO)."
    ),
)
__doc__ = __doc__.format(usage=TASK.usage_text(), expected=TASK.expected_text())

if __name__ == "__main__":
    raise SystemExit(run_tuned_example(TASK, out=sys.stdout, err=sys.stderr))
