"""Quiet logs: drop third-party noise that says nothing about the run.

`quiet_lightning()` removes Lightning's advertising tips (LitLogger, litmodels), which it logs
on every Trainer, and the deprecation warning Lightning's own pytree helper triggers in torch
(`isinstance(treespec, LeafSpec)`; not our call, nothing we can change); `quiet_lightning(frozen_eval_modules=True)` also drops its "Found N module(s)
in eval mode at the start of training" warning, for modules that keep a frozen network (an
EMA copy, a fixed feature network) in eval mode on purpose. Idempotent; nothing runs on import.
"""

from __future__ import annotations

import logging
import warnings

_TIP_PREFIX = "💡 Tip:"
_LIGHTNING_LOGGERS = (
    "pytorch_lightning.utilities.rank_zero",
    "lightning.pytorch.utilities.rank_zero",
    "lightning_fabric.utilities.rank_zero",
    "lightning.fabric.utilities.rank_zero",
)
EVAL_MODE_WARNING = r"Found \d+ module\(s\) in eval mode at the start of training"
_LIGHTNING_PYTREE_DEPRECATION = r"`isinstance\(treespec, LeafSpec\)` is deprecated"


class _DropTips(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_TIP_PREFIX)


_FILTER = _DropTips()


def quiet_lightning(*, frozen_eval_modules: bool = False) -> None:
    """Install the filters (once per process; calling again is harmless)."""
    for name in _LIGHTNING_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
    warnings.filterwarnings("ignore", message=_LIGHTNING_PYTREE_DEPRECATION, module=r"pytorch_lightning\.|lightning\.")
    if frozen_eval_modules:
        warnings.filterwarnings("ignore", message=EVAL_MODE_WARNING)
