"""HATRPO on Multi-Agent MuJoCo HalfCheetah 2x3 (two agents, three joints each).

{usage}

Settings: HARL's tuned HATRPO settings for this task (kl_threshold 0.01, actor and critic MLP
[128, 128, 128], γ 0.99, λ 0.95, critic lr 5e-4, 5 critic epochs, value normalisation,
``agent_obsk`` 0), 4,000 env steps per iteration from 4 envs in one EnvRunner.

Results to expect
-----------------
{expected}
"""

import sys

from rllib_hatrpo.experiments.tuned import TunedTask
from rllib_hatrpo.experiments.tuned_script import run_tuned_example

TASK = TunedTask(
    name="halfcheetah_2x3",
    env="mamujoco",
    env_config={"scenario": "HalfCheetah", "agent_conf": "2x3", "agent_obsk": 0},
    env_steps=200_000,
    training={
        "kl_threshold": 0.01,
        "actor_hidden_sizes": [128, 128, 128],
        "critic_hidden_sizes": [128, 128, 128],
    },
    episodes_for_smoothing=8,
    expected={"uniform": 50.0, "kkt": 50.0, "greedy": 50.0, "ppo": -175.0},
    expected_note=(
        "Measured by `python benchmarks/compare.py --tasks halfcheetah_2x3 --seeds 0 1 2` "
        "(docs/results.md): final returns at 200,000 env steps, seeds 0/1/2: uniform 180.8, "
        "144.5, 369.6; kkt 199.1, 179.7, 354.0; greedy 114.6, 237.1, 142.2; PPO -52.6, -95.6, "
        "-86.2. First-iteration returns: about -145 (HATRPO) and -420 (PPO). Threshold: the "
        "method family's lowest final minus 25 % of its rise over the first iteration. "
        "2-core CPU, ray 2.60.0, torch 2.13.0, gymnasium-robotics 1.4.2, mujoco 4.0.0. "
        "HARL reports about 5,400 for HATRPO after 10M steps on the MuJoCo v2 models."
    ),
)
__doc__ = __doc__.format(usage=TASK.usage_text(), expected=TASK.expected_text())

if __name__ == "__main__":
    raise SystemExit(run_tuned_example(TASK, out=sys.stdout, err=sys.stderr))
