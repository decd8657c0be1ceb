"""HATRPO on Multi-Agent MuJoCo Walker2d 2x3 (two agents, one leg of three joints each).

{usage}

Settings: HARL's tuned HATRPO values for this task
(``tuned_configs/mamujoco/Walker2d-v2-2x3/hatrpo``): kl_threshold 0.01, actor and critic MLP
[128, 128, 128], γ 0.99, λ 0.95, critic lr 5e-4, 5 critic epochs, value normalisation,
``agent_obsk`` 0 (11 observations and 3 actions per agent). Episodes last up to 1,000 steps
and end early when the walker falls. 4,000 env steps per iteration from 4 envs in one
EnvRunner.

Results to expect
-----------------
{expected}
"""

import sys

from rllib_hatrpo.cli.tuned_example import run_tuned_example
from rllib_hatrpo.experiments.tuned import TunedTask

TASK = TunedTask(
    name="walker2d_2x3",
    env="mamujoco",
    env_config={"scenario": "Walker2d", "agent_conf": "2x3", "agent_obsk": 0},
    env_steps=200_000,
    training={
        "kl_threshold": 0.01,
        "actor_hidden_sizes": [128, 128, 128],
        "critic_hidden_sizes": [128, 128, 128],
    },
    episodes_for_smoothing=8,
    expected={"uniform": 267.0, "kkt": 277.9, "greedy": 289.3, "ppo": 55.9},
    expected_note=(
        "Measured: the first 200,000 env steps of the MaMuJoCo campaign's 2M-step runs "
        "(`benchmarks/compare.py`, docs/results.md; two runs at a time on a shared 2-core CPU, "
        "ray 2.60.0, torch 2.13.0, gymnasium-robotics 1.4.2, mujoco 4.0.0), seeds 0-4. Final "
        "team return (mean of the last 10 % of iterations), mean ± std over seeds: uniform "
        "374.5 ± 19.2 (lowest seed 355.5), kkt 395.4 ± 17.0 (370.0), greedy 408.4 ± 20.1 "
        "(385.3), RLlib PPO 124.5 ± 32.4 (74.1); a uniformly random policy scores 1.7. "
        "Threshold = the lowest seed minus 25 % of its distance from the "
        "random policy, rounded down to 0.1 (`python benchmarks/tuned_expectations.py`, which "
        "writes docs/data/tuned_expectations.md). At 2M env steps the same runs reach 2,425.5 "
        "± 1,416.1 (uniform), 1,889.5 ± 952.1 (kkt), 2,519.7 ± 1,138.3 (greedy) and 238.2 ± "
        "36.3 (PPO)."
    ),
)
__doc__ = __doc__.format(usage=TASK.usage_text(), expected=TASK.expected_text())

if __name__ == "__main__":
    raise SystemExit(run_tuned_example(TASK, out=sys.stdout, err=sys.stderr))
