"""The ablation benchmark: run strategy rows x seeds end to end, aggregate, report (scripts/ablate.py)."""
