"""Run machinery that is not data: folder locks (lock), the run-folder contract (runs: metrics.json, error.json,
interrupted.json, signals), Hydra glue and the config folder (config), quiet Lightning logs (logs), logger
construction (loggers), worker processes that die with their parent (workers) and the matplotlib set-up (plotting).

It sits inside the data layer's floor (it imports only faces' own io, errors and summary), so every package above
can use it; nothing here imports torch at import time unless a module needs it.
"""
