"""HATRPO's mathematics in pure torch, without Ray.

- :mod:`~rllib_hatrpo.core.advantages`: GAE and moments over the valid rows;
- :mod:`~rllib_hatrpo.core.value_norm`: running moments and value normalisation;
- :mod:`~rllib_hatrpo.core.value_loss`: the critic's clipped Huber loss;
- :mod:`~rllib_hatrpo.core.running_mean_std`: the networks' input normalisation;
- :mod:`~rllib_hatrpo.core.trust_region`: one agent's TRPO step (conjugate gradient,
  Fisher-vector products, line search);
- :mod:`~rllib_hatrpo.core.allocation`: the allocation of the joint KL budget and the
  sequential-update protocol between the allocators and the learner.

Nothing here imports Ray or RLlib (a test asserts it): the RLlib learner gathers tensors and
calls these functions.
"""
