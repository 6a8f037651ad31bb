"""What a resumed experiment may reuse: only results made under the settings it asks for now.

`ablate.py` skips every stage whose output is already in out_dir; that is what makes a stopped study resumable.
It would also mix two experiments silently when the config changed in between (a new generator recipe in
`experiment=study`, another classifier budget): the report would pair new rows with old runs and the VAE-GAN of
the old recipe would feed the new generated sets. So a reused VAE-GAN export and every finished run are compared
with the settings this invocation would use, and a difference stops the experiment before any new run, naming
the folder, the settings and what to do. Generated sets need no check here: `augment.py` refuses an OUT made with
other settings or another checkpoint (vaegan.generation.store.check_out_dir).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vaegan.checkpoint import read_vaegan_meta

# Where files live and how progress is shown: these may differ between machines and invocations without changing
# what a run computes. A generated set's identity is guarded by augment.py, not by its path.
LOCATION_KEYS = (
    "paths",
    "data.root",
    "data.num_workers",
    "balance.generated_dir",
    "trainer.enable_progress_bar",
    "logger",
)
# The VAE-GAN's resolution may be asked for as "auto" (the data's size, resolved when training starts).
_RESOLVED_LATER = "auto"


class StaleResultError(RuntimeError):
    """A result in out_dir was made with other settings than the experiment that would reuse it."""


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, Mapping):
        return {prefix.rstrip("."): tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat |= _flatten(value, f"{prefix}{key}.")
    return flat


def changed_settings(old: Mapping, new: Mapping, *, ignore: tuple[str, ...] = LOCATION_KEYS) -> dict[str, tuple]:
    """{dotted key: (old value, new value)} for the settings both record that differ. A key only one side has
    is not compared: settings added to the code later are absent from older results."""
    before, after = _flatten(old), _flatten(new)
    return {
        key: (before[key], after[key])
        for key in sorted(before.keys() & after.keys())
        if before[key] != after[key]
        and after[key] != _RESOLVED_LATER
        and not any(key == skip or key.startswith(skip + ".") for skip in ignore)
    }


def describe(changed: dict[str, tuple], *, limit: int = 6) -> str:
    shown = [f"{key}: {old!r} then, {new!r} now" for key, (old, new) in list(changed.items())[:limit]]
    more = f" (and {len(changed) - limit} more)" if len(changed) > limit else ""
    return "; ".join(shown) + more


def check_reusable_vaegan(export: Path, *, requested: DictConfig) -> None:
    """Refuse to reuse `export` (out_dir/vaegan) when the composed train_vaegan config asks for another one."""
    meta = read_vaegan_meta(export)
    then = {"vaegan": meta.get("config", {}), "epochs": meta.get("epochs"), "seed": meta.get("seed")}
    then["data"] = meta.get("data", {})
    now = OmegaConf.to_container(requested, resolve=True)
    changed = changed_settings(then, {key: now.get(key) for key in then})
    if changed:
        raise StaleResultError(
            f"{export} was trained with other settings than this experiment's VAE-GAN ({describe(changed)}). "
            f"Delete {export.parent} and the sets made from it ({export.parent.parent / 'generated'}) to train it "
            f"anew, run this configuration under another name=..., or pass vaegan.checkpoint={export} to reuse it "
            "on purpose"
        )


def check_finished_run(run_dir: Path, *, run_cfg: DictConfig) -> None:
    """Refuse a finished run (metrics.json) whose stored config.yaml differs from the one it would get now."""
    stored = run_dir / "config.yaml"
    if not stored.is_file():  # runs from before config.yaml was kept: nothing to compare
        return
    changed = changed_settings(
        OmegaConf.to_container(OmegaConf.load(stored), resolve=True), OmegaConf.to_container(run_cfg, resolve=True)
    )
    if changed:
        raise StaleResultError(
            f"{run_dir} finished under other settings than this experiment gives it ({describe(changed)}); its "
            f"numbers would be reported beside runs of the new settings. Delete {run_dir} to train it again, or run "
            "this configuration under another name=... (a new out_dir)"
        )
