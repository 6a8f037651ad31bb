"""Stage 3 of the ablation on a Hydra launcher: the pending rows x seeds as ONE multirun of
scripts/train_classifier.py (a subprocess), e.g. submitit jobs on this machine or a Slurm job array.

The ablation composes every run's classifier config itself, exactly as the in-process path does,
and writes it into the run's folder (`launch_config.yaml`, next to `row.json`). The multirun sweeps
a single key, `+ablation_run=<row>/seed<k>,...`, with `hydra.sweep.dir=<out_dir>/runs` and
`hydra.sweep.subdir=${ablation_run}`, so every job's Hydra output folder *is* its run folder;
scripts/train_classifier.py sees `ablation_run`, loads `launch_config.yaml` and trains. The two
processes share nothing but files: each run leaves `metrics.json` (finished) or `error.json`
(failed), which the report reads, so resuming works as for the in-process path.

`conf/launcher/<name>.yaml` picks the plugin (`plugin:`, a `hydra/launcher` choice) and every other
key is handed on as `hydra.launcher.<key>=<value>` (null keys are left to the plugin's default).
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from classifier.train import world_size
from faces.io import write_text_atomic
from faces.runkit.config import CONF_DIR, trainer_uses_gpu
from faces.runkit.runs import ERROR_FILE, METRICS_FILE, ROW_FILE, record_failure

log = logging.getLogger("ablate")

SCRIPT = CONF_DIR.parent / "scripts" / "train_classifier.py"
# The multirun key naming a run folder relative to hydra.sweep.dir, and the run's config file in it.
LAUNCH_KEY = "ablation_run"
LAUNCH_CONFIG = "launch_config.yaml"
# What conf/launcher/*.yaml calls the hydra/launcher choice; every other key is a launcher option.
PLUGIN_KEY = "plugin"


@dataclass(frozen=True)
class PendingRun:
    """One stage-3 run to hand to the launcher: `run_dir` is `<out_dir>/runs/<row>/seed<seed>`."""

    row: str
    seed: int
    run_dir: Path
    config: DictConfig

    @property
    def subdir(self) -> str:
        return f"{self.row}/seed{self.seed}"


def launcher_plugin(cfg: DictConfig) -> str | None:
    """The `hydra/launcher` choice an ablate config asks for (`launcher=<name>`), or None (in-process)."""
    launcher = cfg.get("launcher")
    if launcher is None:
        return None
    if isinstance(launcher, str):  # `launcher: submitit_local` written as a plain value
        return launcher
    plugin = launcher.get(PLUGIN_KEY)
    if not plugin:
        raise ValueError(
            f"launcher config has no '{PLUGIN_KEY}' (the hydra/launcher choice, e.g. submitit_slurm): {dict(launcher)}"
        )
    return str(plugin)


def launcher_options(cfg: DictConfig) -> dict[str, Any]:
    """The launcher's options (resolved; `${out_dir}` may appear in them), without the plugin name."""
    launcher = cfg.get("launcher")
    if launcher is None or isinstance(launcher, str):
        return {}
    options = OmegaConf.to_container(launcher, resolve=True)
    assert isinstance(options, dict)
    return {str(k): v for k, v in options.items() if k != PLUGIN_KEY}


def _value(value: Any) -> str:
    """A Python value as a Hydra override value (strings quoted, lists and dicts in override syntax)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{k}:{_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, Sequence) and not isinstance(value, str):
        return "[" + ",".join(_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def option_overrides(options: Mapping[str, Any]) -> list[str]:
    """`hydra.launcher.<key>=<value>` for every set option; a dict option (Slurm's
    additional_parameters) is passed key by key, as Hydra cannot add keys to it in one override."""
    overrides = []
    for key, value in options.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            overrides += [f"++hydra.launcher.{key}.{k}={_value(v)}" for k, v in value.items()]
        else:
            overrides.append(f"hydra.launcher.{key}={_value(value)}")
    return overrides


_PLAIN = re.compile(r"^[A-Za-z0-9_.+-]+$")
_ERROR_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt): ")


def check_launcher(cfg: DictConfig, rows: Sequence[str]) -> str | None:
    """A missing plugin, an unknown option or an unusable row name fails here, before the VAE-GAN trains."""
    plugin = launcher_plugin(cfg)
    if plugin is None:
        if world_size(cfg.trainer) > 1:
            # Lightning starts DDP ranks by re-running this command: every rank would run the whole ablation
            # (VAE-GAN, generated sets, every run) into one out_dir, and a signal to one left the others hung.
            raise ValueError(
                f"trainer asks for {world_size(cfg.trainer)} processes (DDP), but scripts/ablate.py runs its stages in "
                "one process, and Lightning would start the other ranks by re-running the whole ablation; use one "
                "device per run (trainer=gpu or trainer=cpu), with launcher=submitit_local or launcher=submitit_slurm "
                "to run the rows x seeds side by side, or train one run with DDP: scripts/train_classifier.py trainer=ddp"
            )
        return None
    if plugin.startswith("submitit"):
        try:
            import hydra_plugins.hydra_submitit_launcher  # noqa: F401
        except ImportError as error:
            raise ImportError(
                f"launcher={plugin} needs Hydra's submitit launcher: .venv/bin/pip install -e '.[slurm]' "
                f"(or `pip install hydra-submitit-launcher`)"
            ) from error
    if world_size(cfg.trainer) > 1:
        raise ValueError(
            f"launcher={plugin} runs every row x seed as its own job on one device, but the trainer asks for "
            f"{world_size(cfg.trainer)} processes (DDP); use trainer=gpu (one GPU per job) or leave launcher unset"
        )
    if plugin == "submitit_local" and trainer_uses_gpu(cfg.trainer) and not launcher_options(cfg).get("gpus_per_node"):
        raise ValueError(
            "launcher=submitit_local hides the GPUs from its jobs unless launcher.gpus_per_node is set "
            "(submitit sets CUDA_VISIBLE_DEVICES=0..n-1 for every job); add launcher.gpus_per_node=1"
        )
    bad = [r for r in rows if not _PLAIN.match(r)]
    if bad:
        raise ValueError(f"row names {bad} cannot name a launcher job folder; use letters, digits and _ . + - only")
    from .config import compose_config

    # Composing the script's config with the launcher overrides validates the plugin name and every option key.
    try:
        compose_config("train_classifier", [f"hydra/launcher={plugin}", *option_overrides(launcher_options(cfg))])
    except Exception as error:
        raise ValueError(
            f"launcher={plugin}: its options do not fit hydra/launcher={plugin} ({type(error).__name__}: "
            f"{error}); launcher.<key> is passed on as hydra.launcher.<key>"
        ) from error
    return plugin


def write_launch_config(run: PendingRun) -> Path:
    """The run's full classifier config (unresolved, as the in-process path would use it)."""
    return write_text_atomic(run.run_dir / LAUNCH_CONFIG, OmegaConf.to_yaml(run.config, resolve=False))


def load_launched_run(run_dir: Path | str) -> tuple[DictConfig, str | None]:
    """In the launched job: the config the ablation wrote for this run folder, and its row name."""
    run_dir = Path(run_dir)
    path = run_dir / LAUNCH_CONFIG
    if not path.is_file():
        raise FileNotFoundError(
            f"{LAUNCH_KEY} names {run_dir}, which has no {LAUNCH_CONFIG}; "
            "only scripts/ablate.py launcher=... writes it (run the ablation instead)"
        )
    row_file = run_dir / ROW_FILE
    row = json.loads(row_file.read_text()).get("row") if row_file.is_file() else None
    return OmegaConf.load(path), row


def launch_command(
    pending: Sequence[PendingRun], *, runs_dir: Path, plugin: str, options: Mapping[str, Any]
) -> list[str]:
    """One multirun of scripts/train_classifier.py whose jobs write exactly into `runs_dir/<row>/seed<k>/`."""
    return [
        sys.executable,
        str(SCRIPT),
        "--multirun",
        f"hydra/launcher={plugin}",
        f"hydra.sweep.dir={_value(str(runs_dir))}",
        "hydra.sweep.subdir=${" + LAUNCH_KEY + "}",
        *option_overrides(options),
        f"+{LAUNCH_KEY}=" + ",".join(run.subdir for run in pending),
    ]


def launch_runs(cfg: DictConfig, pending: Sequence[PendingRun], *, out_dir: Path) -> int:
    """Run the pending runs as one multirun on the configured launcher; returns its exit code.

    The multirun exits non-zero when any job failed (its error.json says why) or the launcher
    gave up; a run left with neither metrics.json nor error.json (a killed or timed-out job)
    gets an error.json here, so the report lists it as failed rather than dropping it.
    """
    plugin = launcher_plugin(cfg)
    assert plugin is not None
    if not pending:
        return 0
    for run in pending:
        if run.run_dir != out_dir / "runs" / run.subdir:
            raise ValueError(
                f"{run.run_dir} is not {out_dir / 'runs' / run.subdir}, where its launcher job would write"
            )
        write_launch_config(run)
    command = launch_command(pending, runs_dir=out_dir / "runs", plugin=plugin, options=launcher_options(cfg))
    log_dir = out_dir / "launch"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"multirun_{time.strftime('%Y-%m-%d_%H-%M-%S')}.log"
    log.info("stage 3/3: %d run(s) as one multirun on hydra/launcher=%s (output: %s)", len(pending), plugin, log_path)
    log.info("%s", " ".join(command))
    started = time.perf_counter()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "HYDRA_FULL_ERROR": "1"}
    with log_path.open("w") as handle:
        handle.write(" ".join(command) + "\n\n")
        handle.flush()
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
        assert process.stdout is not None
        last_error = ""
        try:
            for line in process.stdout:
                handle.write(line)
                sys.stdout.write(line)
                if _ERROR_LINE.match(line):
                    last_error = line.strip()
            returncode = process.wait()
        except BaseException:  # interrupted (SIGTERM, Ctrl-C): the multirun must not outlive the ablation
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
            raise
    elapsed = time.perf_counter() - started
    finished = sum((run.run_dir / METRICS_FILE).is_file() for run in pending)
    (log.info if returncode == 0 else log.warning)(
        "launcher=%s: %d/%d run(s) finished in %.0fs (multirun exit code %d; log %s)",
        plugin,
        finished,
        len(pending),
        elapsed,
        returncode,
        log_path,
    )
    detail = f"; the multirun's last error: {last_error}" if last_error else ""
    for run in pending:
        if not (run.run_dir / METRICS_FILE).is_file() and not (run.run_dir / ERROR_FILE).is_file():
            record_failure(
                run.run_dir,
                RuntimeError(
                    f"hydra/launcher={plugin} returned no result for this run (job killed, timed out, or not started; multirun "
                    f"exit code {returncode}{detail}); see {log_path} and the launcher's job logs"
                ),
                row=run.row,
                seed=run.seed,
            )
    return returncode
