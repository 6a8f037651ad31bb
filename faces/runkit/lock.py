"""One writer per output folder: `with folder_lock(path, what="augmentation output"): ...`.

The lock is a file, `<folder>/.lock`, created with O_CREAT|O_EXCL (atomic on local file
systems), holding the writer's pid, host, start time and command line. A second writer gets a
FolderLockedError naming the holder. A lock whose pid is no longer running on this host
(the run was killed) is stale and is taken over safely: it is first renamed to a name only this
process uses, and only if what was renamed is still the stale lock that was inspected is it
removed (otherwise it is put back), so two processes racing for one stale lock never both win.

The lock is re-entrant within a process (an entry point and the library function it calls may
both take it). Under DDP only the global-rank-0 process takes it (by default, from the RANK /
LOCAL_RANK variables the launchers set): the other ranks share the folder with it on purpose.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import FolderLockedError

log = logging.getLogger(__name__)

LOCK_FILE = ".lock"
# A lock file is written right after it is created; one that is still empty or unreadable after
# this long belongs to a process that died in between.
_UNWRITTEN_GRACE_S = 5.0
# Locks this process holds: lock path -> [token, depth, pid] (the pid keeps a forked child from
# believing it holds its parent's locks).
_HELD: dict[Path, list] = {}


def _read(lock: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(lock.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    except OSError:
        return True
    return True


def _is_stale(holder: dict[str, Any]) -> bool:
    """True only when we can tell for sure that the holder is gone: same host, pid not running."""
    if holder.get("host") != socket.gethostname():
        return False
    pid = holder.get("pid")
    return isinstance(pid, int) and pid > 0 and pid != os.getpid() and not _pid_alive(pid)


def _describe(holder: dict[str, Any]) -> str:
    command = " ".join(holder.get("argv") or [])
    return f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')}" + (
        f" ({holder.get('what')}: {command})" if command else f" ({holder.get('what')})"
    )


def _take_over_stale(lock: Path, holder: dict[str, Any] | None) -> None:
    """Remove `lock` if it still is the stale lock `holder` was read from (None: a lock file left empty
    by a process killed between creating and writing it)."""
    aside = lock.with_name(f"{lock.name}.stale.{os.getpid()}.{uuid.uuid4().hex[:8]}")
    try:
        os.rename(lock, aside)
    except FileNotFoundError:
        return  # someone else took it over first; just try again
    if _read(aside) == holder:
        if holder is None:
            log.warning("%s: removing an empty lock file left by a killed process", lock.parent)
        else:
            log.warning(
                "%s: taking over the stale lock of %s (that process is no longer running)",
                lock.parent,
                _describe(holder),
            )
        aside.unlink(missing_ok=True)
        return
    # We moved a lock that a faster process had just taken: put it back unless yet another took its place.
    with contextlib.suppress(FileExistsError):
        os.link(aside, lock)
    aside.unlink(missing_ok=True)


def _acquire(lock: Path, *, what: str) -> str:
    token = uuid.uuid4().hex
    record = {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "what": what,
        "argv": list(sys.argv),
        "token": token,
    }
    deadline = time.monotonic() + 30.0
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read(lock)
            if holder is None:
                try:
                    age = time.time() - lock.stat().st_mtime
                except FileNotFoundError:
                    continue  # released meanwhile
                if age < _UNWRITTEN_GRACE_S and time.monotonic() < deadline:
                    time.sleep(0.05)  # created a moment ago, its record is being written
                    continue
                _take_over_stale(lock, None)
                continue
            if not _is_stale(holder):
                raise FolderLockedError(
                    f"{lock.parent} is being written by another run: {_describe(holder)}. Wait for it to finish or "
                    f"stop it; if that process is not running any more, delete {lock}"
                ) from None
            _take_over_stale(lock, holder)
            if time.monotonic() > deadline:
                raise FolderLockedError(
                    f"{lock.parent}: could not take over the stale lock {lock}; delete it and retry"
                ) from None
            continue
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(record))
            handle.flush()
            os.fsync(handle.fileno())
        return token


def _release(lock: Path, token: str) -> None:
    holder = _read(lock)
    if holder is not None and holder.get("token") == token:
        lock.unlink(missing_ok=True)
    else:
        log.warning("%s: the lock file was replaced or removed while this run held it", lock.parent)


def is_rank_zero_process() -> bool:
    """False in DDP worker processes of rank > 0 (Lightning's launcher and torchrun set RANK/LOCAL_RANK)."""
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0"))) == 0


def lock_holder(folder: Path | str) -> dict[str, Any] | None:
    """The record of the run holding `folder`'s lock, or None when it is not locked (or the lock is stale)."""
    holder = _read(Path(folder) / LOCK_FILE)
    return None if holder is None or _is_stale(holder) else holder


@contextmanager
def folder_lock(folder: Path | str, *, what: str = "run", enabled: bool | None = None) -> Iterator[Path]:
    """Hold `folder`'s lock for the duration of the block (the folder is created if missing).

    Raises FolderLockedError naming the holder's pid, host, start time and command line if
    another live process holds it. `enabled=None` (default): lock in the rank-0 process only.
    """
    folder = Path(folder)
    if enabled is None:
        enabled = is_rank_zero_process()
    if not enabled:
        yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / LOCK_FILE).resolve()
    if lock in _HELD and _HELD[lock][2] == os.getpid():  # re-entrant: this process already holds it
        _HELD[lock][1] += 1
        try:
            yield folder
        finally:
            _HELD[lock][1] -= 1
        return
    token = _acquire(lock, what=what)
    _HELD[lock] = [token, 1, os.getpid()]
    try:
        yield folder
    finally:
        del _HELD[lock]
        _release(lock, token)
