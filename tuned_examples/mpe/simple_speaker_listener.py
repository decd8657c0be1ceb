"""HATRPO on MPE simple_speaker_listener_v4 (a speaker and a listener; discrete actions).

{usage}

The agents are heterogeneous: the speaker sees only the goal landmark's colour (3
observations) and says one of 3 words; the listener sees its velocity, the landmarks and the
word (11 observations) and moves (5 actions). Both get the same reward, minus the squared
distance of the listener to the goal landmark.

Settings: HARL's tuned HATRPO values for this task
(``tuned_configs/pettingzoo_mpe/simple_speaker_listener_v3-discrete/hatrpo``; mpe2 ships the
scenario as v4): kl_threshold 0.005, actor and critic MLP [128, 128], γ 0.99, λ 0.95, critic
lr 5e-4, 5 critic epochs, value normalisation, discrete actions. Team reward = the sum of the
agents' rewards, as HARL forms it; 25-step episodes. 4,000 env steps per iteration from 4 envs
in one EnvRunner.

Results to expect
-----------------
{expected}
"""

import sys

from rllib_hatrpo.cli.tuned_example import run_tuned_example
from rllib_hatrpo.experiments.tuned import TunedTask

TASK = TunedTask(
    name="simple_speaker_listener",
    env="mpe",
    env_config={"scenario": "simple_speaker_listener_v4"},
    env_steps=200_000,
    training={
        "kl_threshold": 0.005,
        "actor_hidden_sizes": [128, 128],
        "critic_hidden_sizes": [128, 128],
    },
    episodes_for_smoothing=100,
    expected={"uniform": -44.9, "kkt": -45.7, "greedy": -44.6},
    expected_note=(
        "Measured: `benchmarks/compare.py --tasks simple_spread simple_speaker_listener "
        "--methods uniform kkt greedy --seeds 0 1 2 3 4 --out results/compare_mpe --data "
        "docs/data/compare_mpe` (one run at a time on a shared 2-core CPU, ray 2.60.0, torch "
        "2.13.0, mpe2 1.1.1), "
        "200,000 env steps. Final team return (mean of the last 10 % of iterations), mean ± "
        "std over seeds 0-4: uniform -30.8 ± 1.0 (lowest seed -32.5), kkt -32.1 ± 0.9 "
        "(-33.5), greedy -30.5 ± 1.2 (-32.0); a uniformly random policy scores -82.0. "
        "Threshold = the lowest seed minus 25 % of its distance from the random policy, "
        "rounded down to 0.1 (`python benchmarks/tuned_expectations.py`, which writes "
        "docs/data/tuned_expectations.md). PPO has no expectation on this task."
    ),
)
__doc__ = __doc__.format(usage=TASK.usage_text(), expected=TASK.expected_text())

if __name__ == "__main__":
    raise SystemExit(run_tuned_example(TASK, out=sys.stdout, err=sys.stderr))
