"""Stage 3's progress bar (tqdm): run k of N, the current row and seed, and an ETA from the runs finished
in this invocation (smoothing=0: the mean time of the finished runs, not of the last one).

`progress: null` (conf/ablate.yaml) shows it only on a terminal (tqdm's disable=None), so CI logs and
redirected output stay plain lines; true/false force it. Log lines print above the bar, not through it.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from types import TracebackType
from typing import Self

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

# Loggers with their own console handler: the root (Hydra's) and Lightning's ("GPU available: ...").
_CONSOLE_LOGGERS = ("", "pytorch_lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


class StageProgress:
    """`with StageProgress(enabled=...) as progress:` then start(total, done), running(label), finished()."""

    def __init__(self, *, enabled: bool | None) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self._stack = ExitStack()

    def __enter__(self) -> Self:
        return self

    def start(self, *, total: int, done: int, description: str = "stage 3/3") -> None:
        """Show the bar; `done` runs finished in an earlier invocation count as done, not towards the ETA."""
        if total == done:
            return
        self.bar = self._stack.enter_context(
            tqdm(
                total=total,
                initial=done,
                desc=description,
                unit="run",
                smoothing=0,
                dynamic_ncols=True,
                disable=None if self.enabled is None else not self.enabled,
            )
        )
        if not self.bar.disable:  # log lines through tqdm.write, above the bar
            self._stack.enter_context(
                logging_redirect_tqdm(loggers=[logging.getLogger(name) for name in _CONSOLE_LOGGERS])
            )

    def running(self, label: str) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(label)

    def finished(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._stack.close()
