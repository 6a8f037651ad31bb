"""Errors raised by the data layer.

Every message names the offending path, line or value and what was expected, because the
most common support request for FER codebases is "couldn't find any class folder" with no
hint of what the loader looked for.
"""

from __future__ import annotations


class DatasetError(ValueError):
    """A dataset on disk (or its configuration) is not what the loader expects."""


class EmptyGeneratedSetError(DatasetError):
    """A generated set whose quality filter accepted nothing: a row trained on it has no generated data."""


class SyntheticLeakError(RuntimeError):
    """A generated (VAE-GAN) sample reached a split that must be 100% real (val or test)."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, not ours, malformed, or does not fit what it is used for.

    One type for both model packages' checkpoints (VAE-GAN exports, classifier checkpoints), so
    every caller catches one thing and every message names the file.
    """


class FolderLockedError(RuntimeError):
    """An output folder is being written by another live run (see faces.runkit.lock.folder_lock)."""
