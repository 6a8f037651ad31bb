"""Stage 3's progress bar: run k of N with the runs finished earlier counted, shown when forced or on a
terminal, silent otherwise (CI logs), and log lines printed above the bar instead of through it."""

from __future__ import annotations

import logging

from ablation.progress import StageProgress


def test_forced_bar_counts_earlier_runs_and_keeps_log_lines_whole(capsys) -> None:
    logging.getLogger().addHandler(handler := logging.StreamHandler())  # a console handler, as Hydra sets up
    try:
        with StageProgress(enabled=True) as progress:
            progress.start(total=4, done=1)
            progress.running("oversample seed 0")
            logging.getLogger("ablate").warning("a log line")
            progress.finished()
            progress.finished()
            assert progress.bar.n == 3 and progress.bar.total == 4
    finally:
        logging.getLogger().removeHandler(handler)
    err = capsys.readouterr().err
    assert "3/4" in err and "oversample seed 0" in err
    assert "\na log line\n" in err.replace("\r", "\n")  # on its own line, not glued to the bar


def test_quiet_when_not_a_terminal_or_disabled(capsys) -> None:
    for enabled in (None, False):  # pytest's stderr is not a terminal
        with StageProgress(enabled=enabled) as progress:
            progress.start(total=3, done=0)
            progress.finished()
    with StageProgress(enabled=True) as progress:
        progress.start(total=2, done=2)  # nothing left to run: no bar at all
        assert progress.bar is None
    assert capsys.readouterr().err == ""
