"""Running experiments with HATRPO: the training loop, checkpoints and their checks, metrics
records, resuming, Ray Tune trials and sweeps, tuned examples, evaluation, plots and summaries.

- :mod:`~rllib_hatrpo.experiments.spec`: a run's settings (``RunSpec``) -> its config;
  ``SettingError`` names a bad setting.
- :mod:`~rllib_hatrpo.experiments.loop`: the training loop and its stop criteria.
- :mod:`~rllib_hatrpo.experiments.records`, :mod:`~rllib_hatrpo.experiments.checkpoints`:
  ``metrics.csv`` rows and their column names; checkpoints saved and restored with checks.
- :mod:`~rllib_hatrpo.experiments.resume`: continuing a ``hatrpo train`` run.
- :mod:`~rllib_hatrpo.experiments.plans`: an output folder's plan record, compared on rerun.
- :mod:`~rllib_hatrpo.experiments.tune`, :mod:`~rllib_hatrpo.experiments.sweeps`,
  :mod:`~rllib_hatrpo.experiments.tuned`: Tune trials, sweeps and the tuned examples
  (:mod:`~rllib_hatrpo.cli.tuned_example`: the scripts' shared command line).
- :mod:`~rllib_hatrpo.experiments.summaries`, :mod:`~rllib_hatrpo.experiments.plots`,
  :mod:`~rllib_hatrpo.experiments.evaluation`: final returns and tables, pictures, episodes
  of a checkpoint's policies.

This layer sits above the algorithm and the envs and below the command line: it imports
nothing from :mod:`rllib_hatrpo.cli` and never prints (a function reports progress through a
callback, or writes to a stream, that its caller gives it), so every entry point
(``hatrpo``, the tuned examples, ``benchmarks/``) trains the same way.
"""
