"""Running experiments with HATRPO: the training loop, checkpoints and their checks, metrics
records, resuming, Ray Tune trials and sweeps, tuned examples, evaluation, plots and summaries.

This layer sits above the algorithm and the envs and below the command line: it never parses
arguments and never prints (the CLI and the scripts do), so every entry point (``hatrpo``,
the tuned examples, ``benchmarks/``) trains the same way.
"""
