"""Torch implementations of the HATRPO learner and modules."""
