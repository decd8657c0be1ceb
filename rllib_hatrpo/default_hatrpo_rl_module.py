"""The module contract of HATRPO: one actor per agent and a learner-only central critic.

Actors map an agent's own observation to ``Columns.ACTION_DIST_INPUTS`` (no padding: each
agent keeps its own observation and action space). The critic reads the environment's global
state from ``Columns.OBS`` of its own batch and never leaves the learner.
"""

from __future__ import annotations

#: Module ID of the learner-only central critic V(s) on the global state.
SHARED_CRITIC_ID = "__shared_critic__"

#: Actor/critic network defaults: HARL's HATRPO settings for MPE and MaMuJoCo (Zhong et al.,
#: Heterogeneous-Agent Reinforcement Learning, JMLR 25 (2024), arXiv:2304.09870).
DEFAULT_HIDDEN_SIZES = (128, 128)
DEFAULT_ACTIVATION = "relu"
#: The networks' first layer: a running mean/std of every input feature
#: (``rllib_hatrpo.input_normalization``; "layer_norm" is HARL's feature normalisation).
DEFAULT_INPUT_NORMALIZATION = "mean_std"
#: Initial log-std of the Gaussian head: std ≈ 0.37, HARL's sigmoid(1)·0.5 at initialisation.
DEFAULT_INITIAL_LOG_STD = -1.0
