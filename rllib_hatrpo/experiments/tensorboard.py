"""TensorBoard event files next to ``metrics.csv``: one scalar per CSV column per iteration.

``hatrpo train`` writes, per seed, ``OUTPUT/seed_<s>/events.out.tfevents.*`` with every
``metrics.csv`` column as a scalar (tag: the column's name, e.g. ``team_return`` or
``agent_0/kl_budget``; step: ``training_iteration``), so that ``tensorboard --logdir OUTPUT``
shows every seed as a run. Missing values (NaN, an iteration without a finished episode) are
left out, as the CSV leaves their cells empty::

    with TensorBoardScalars(run_dir) as board:
        board.append({"training_iteration": 1, "team_return": -50.0})

The writer is ``torch.utils.tensorboard.SummaryWriter`` if the ``tensorboard`` package is
installed, else ``tensorboardX.SummaryWriter`` (installed with ``ray[rllib]``); with neither,
nothing is written. A resumed seed starts its events at the first iteration after its
checkpoint (``purge_step``), so TensorBoard drops the rows that ``metrics.csv`` dropped too.
No Ray import.
"""

from __future__ import annotations

import itertools
import math
import numbers
import os
from collections.abc import Mapping
from typing import Any

#: The column that gives each scalar's step.
STEP_COLUMN = "training_iteration"

# Event file names hold the second and the host only: a suffix of the process and a count
# keeps a second writer in the same folder (a resume) from replacing the first one's file.
_WRITERS = itertools.count()


def summary_writer_class() -> type | None:
    """torch's ``SummaryWriter`` (needs ``tensorboard``), else tensorboardX's, else None."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        try:
            from tensorboardX import SummaryWriter
        except ImportError:
            return None
    return SummaryWriter


class TensorBoardScalars:
    """Writes rows of ``metrics.csv`` as TensorBoard scalars, flushed after every row."""

    def __init__(self, log_dir: str | os.PathLike, first_step: int | None = None) -> None:
        """Opens an event file in ``log_dir`` (nothing happens without a writer installed).

        Args:
            log_dir: The folder of the event files (a seed's run directory).
            first_step: The first iteration this writer logs, when a resumed run continues
                after a checkpoint: TensorBoard then discards events of that step and later
                from the earlier files. None: a new run.
        """
        writer_class = summary_writer_class()
        self._writer: Any = None
        if writer_class is not None:
            kwargs: dict[str, Any] = {"filename_suffix": f".{os.getpid()}.{next(_WRITERS)}"}
            if first_step is not None:
                kwargs["purge_step"] = int(first_step)
            self._writer = writer_class(log_dir=os.fspath(log_dir), **kwargs)

    @property
    def enabled(self) -> bool:
        """Whether events are written (a SummaryWriter is installed)."""
        return self._writer is not None

    def append(self, row: Mapping[str, Any]) -> None:
        """Writes every finite number of ``row`` as a scalar at step ``row[STEP_COLUMN]``."""
        if self._writer is None:
            return
        step = int(row[STEP_COLUMN])
        for tag, value in row.items():
            if isinstance(value, numbers.Real) and math.isfinite(value):
                self._writer.add_scalar(tag, float(value), global_step=step)
        self._writer.flush()

    def close(self) -> None:
        """Closes the event file."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> TensorBoardScalars:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
