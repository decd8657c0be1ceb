"""Learner connectors of HATRPO."""

from rllib_hatrpo.connectors.central_critic_gae import CentralCriticGAE

__all__ = ["CentralCriticGAE"]
