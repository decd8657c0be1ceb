"""HATRPO on Multi-Agent MuJoCo HalfCheetah 2x3 (two agents, three joints each).

How to run
----------
From the repository root (``pip install -e ".[mamujoco]"`` first)::

    python tuned_examples/mamujoco/halfcheetah_2x3.py                    # uniform, seed 0
    python tuned_examples/mamujoco/halfcheetah_2x3.py --allocator kkt --seeds 0 1 2
    python tuned_examples/mamujoco/halfcheetah_2x3.py --as-test          # exit 1 if short
    RAY_ADDRESS=auto python tuned_examples/mamujoco/halfcheetah_2x3.py --num-env-runners 4 \\
        --seeds 0 1 2 3 --stop-timesteps 2000000                         # on a Ray cluster

Training goes through Ray Tune (one trial per seed, checkpoints every 5 iterations); rerunning
the same command resumes an interrupted experiment. Results land in
``results/tuned_examples/``.

Settings: HARL's tuned HATRPO settings for this task (kl_threshold 0.01, actor and critic MLP
[128, 128, 128], γ 0.99, λ 0.95, critic lr 5e-4, 5 critic epochs, value normalisation,
``agent_obsk`` 0), 4,000 env steps per iteration from 4 envs in one EnvRunner.

Results to expect
-----------------
{expected}
"""

from rllib_hatrpo.tuned_example import TunedTask, run_tuned_example

TASK = TunedTask(
    name="halfcheetah_2x3",
    env="mamujoco",
    env_config={"scenario": "HalfCheetah", "agent_conf": "2x3", "agent_obsk": 0},
    env_steps=200_000,
    training={
        "kl_threshold": 0.01,
        "actor_hidden_sizes": [128, 128, 128],
        "critic_hidden_sizes": [128, 128, 128],
        "gamma": 0.99,
        "lambda_": 0.95,
        "train_batch_size_per_learner": 4000,
    },
    ppo_training={"lr": 3e-4, "num_epochs": 5, "minibatch_size": 500},
    episodes_for_smoothing=8,
    expected={},
    expected_note="",
)
__doc__ = __doc__.format(expected=TASK.expected_text())

if __name__ == "__main__":
    raise SystemExit(run_tuned_example(TASK))
