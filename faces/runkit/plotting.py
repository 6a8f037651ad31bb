"""The one matplotlib set-up: a headless backend, chosen before pyplot is first imported."""

from __future__ import annotations


def pyplot():
    """matplotlib.pyplot on the Agg backend (figures are written to files; there is no screen)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
