"""HATRPO's mathematics in pure torch, without Ray: advantages and the critic loss, the
trust-region step (conjugate gradient, Fisher-vector products, line search), input
normalisation, and the allocation of the joint KL budget (:mod:`rllib_hatrpo.core.allocation`).

Nothing here imports Ray or RLlib (a test asserts it): the RLlib learner gathers tensors and
calls these functions.
"""
