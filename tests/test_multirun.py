"""Sweeps for real: Hydra multiruns of the real entry points (subprocesses), Hydra's submitit
launcher running real jobs on this machine, and an ablation whose stage 3 goes through a launcher.

Every job is a tiny classifier run (tiny preset, resnet10t from scratch, 1 epoch of 2 batches).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import open_dict

from ablation.config import compose_config
from ablation.launch import (
    LAUNCH_CONFIG,
    PendingRun,
    launch_command,
    launcher_options,
    option_overrides,
)
from ablation.pipeline import run_ablation
from ablation.report import write_report

ROOT = Path(__file__).resolve().parents[1]
FAST = [
    "classifier=resnet10t_scratch",
    "train.epochs=1",
    "train.freeze_epochs=0",
    "train.warmup_epochs=0",
    "train.batch_size=16",
    "train.limit_train_batches=2",
]
MISSING_WEIGHTS = "/nonexistent/weights.pth"


def tiny_overrides(root: Path, tmp: Path) -> list[str]:
    return [
        "data.preset=tiny",
        f"data.root={root}",
        f"paths.cache_dir={tmp / 'cache'}",
        f"paths.output_dir={tmp / 'out'}",
        "trainer.enable_progress_bar=false",
        *FAST,
    ]


def run_script(script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "CUDA_VISIBLE_DEVICES": "", "PYTHONUNBUFFERED": "1"}
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / script), *args],
        check=False,
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{script} exited {result.returncode}:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open() as handle:
        return list(csv.DictReader(handle))


def test_multirun_2x2_then_aggregate(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    """`train_classifier.py -m balance=none,oversample seed=0,1` with the default sweep dir (it used to
    fail at once resolving ${hydra:job.name}), then `ablate.py aggregate DIR`: 4 runs, 2 rows."""
    run_script(
        "train_classifier.py",
        "-m",
        "balance=none,oversample",
        "seed=0,1",
        *tiny_overrides(tiny_synthetic_root, tmp_path),
    )
    [sweep] = (tmp_path / "out" / "multirun" / "train_classifier").iterdir()  # outputs/multirun/<script>/<time>/
    assert sorted(p.name for p in sweep.iterdir() if p.is_dir()) == ["0", "1", "2", "3"]
    assert (sweep / "multirun.yaml").is_file()
    metrics = [json.loads((sweep / str(n) / "metrics.json").read_text()) for n in range(4)]
    assert sorted((m["balance"]["name"], m["seed"]) for m in metrics) == [
        ("none", 0),
        ("none", 1),
        ("oversample", 0),
        ("oversample", 1),
    ]

    result = run_script("ablate.py", "aggregate", str(sweep))
    rows = read_csv(sweep / "ablation.csv")
    assert sorted((r["row"], r["seed"], r["status"]) for r in rows) == [
        ("none", "0", "ok"),
        ("none", "1", "ok"),
        ("oversample", "0", "ok"),
        ("oversample", "1", "ok"),
    ]
    table = [line for line in result.stdout.splitlines() if line.startswith("| ") and not line.startswith("| row")]
    assert sorted(line.split("|")[1].strip() for line in table) == ["none", "oversample"]
    assert all(line.split("|")[2].strip().startswith("2/2") for line in table)  # both seeds of each row finished
    assert (sweep / "report.html").is_file()


def test_submitit_local_sweep_jobs_logs_and_failure(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    """The cluster path without a cluster: Hydra's submitit launcher submits two real jobs (processes);
    one finishes, one fails (missing weights file). Each job has its folder and submitit logs; the
    multirun exits non-zero; aggregation lists the failure with its error."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    sweep = tmp_path / "sweep"
    result = run_script(
        "train_classifier.py",
        "-m",
        "hydra/launcher=submitit_local",
        "hydra.launcher.timeout_min=10",
        f"hydra.sweep.dir={sweep}",
        f"classifier.pretrained_path=null,{MISSING_WEIGHTS}",
        *tiny_overrides(tiny_synthetic_root, tmp_path),
        check=False,
    )
    assert result.returncode != 0, "a failed job must fail the multirun"
    assert (sweep / "0" / "metrics.json").is_file() and not (sweep / "0" / "error.json").exists()
    error = json.loads((sweep / "1" / "error.json").read_text())
    assert "PretrainedWeightsError" in error["error"] and MISSING_WEIGHTS in error["error"]
    assert not (sweep / "1" / "metrics.json").exists()
    for job in ("0", "1"):  # Hydra's record of each job and its log, in the job's folder
        assert (sweep / job / ".hydra" / "overrides.yaml").is_file() and (
            sweep / job / "train_classifier.log"
        ).is_file()
    assert MISSING_WEIGHTS in (sweep / "1" / "train_classifier.log").read_text()  # the failure, in the job's own log
    jobs = sorted(p for p in (sweep / ".submitit").iterdir() if p.is_dir() and p.name != "%j")
    assert len(jobs) == 2  # one submitit job each, with its own stdout/stderr and result
    assert all(
        (job / f"{job.name}_0_log.out").is_file() and (job / f"{job.name}_0_result.pkl").is_file() for job in jobs
    )
    assert sum(MISSING_WEIGHTS in (job / f"{job.name}_0_log.out").read_text() for job in jobs) == 1

    paths = write_report(sweep, title="submitit sweep")
    rows = read_csv(paths["csv"])
    assert sorted((r["row"], r["status"]) for r in rows) == [("none", "failed"), ("none", "ok")]
    assert MISSING_WEIGHTS in next(r["error"] for r in rows if r["status"] == "failed")
    assert "| none | 1/2" in paths["markdown"].read_text()


def ablate_cfg(tmp_path: Path, root: Path, name: str, *extra: str):
    cfg = compose_config(
        "ablate",
        [
            "data.preset=tiny",
            f"data.root={root}",
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.output_dir={tmp_path / 'out'}",
            f"name={name}",
            "seeds=[0]",
            "trainer.enable_progress_bar=false",
            "rows=[none,oversample,broken]",
            "classifier_overrides=[" + ",".join(f"'{o}'" for o in FAST) + "]",
            *extra,
        ],
    )
    # A row that passes the up-front checks but fails when its run starts (in the launched job).
    with open_dict(cfg.row_specs):
        cfg.row_specs.broken = {"overrides": ["balance=none", f"classifier.pretrained_path={MISSING_WEIGHTS}"]}
    return cfg


def table(csv_path: Path) -> list[tuple]:
    """ablation.csv without the run folders (which differ between the two out_dirs)."""
    return [tuple(v for k, v in r.items() if k != "path") for r in read_csv(csv_path)]


def launched_matches_in_process(tmp_path: Path, root: Path, launcher: str):
    """The same 3 rows x 1 seed in-process and through `launcher=<launcher>`: the same table; the
    broken row failed in its job; every job wrote exactly into runs/<row>/seed0/."""
    here = run_ablation(ablate_cfg(tmp_path, root, "here"))
    cfg = ablate_cfg(tmp_path, root, "launched", f"launcher={launcher}")
    launched = run_ablation(cfg)
    out = Path(cfg.out_dir)

    # Same seeds, same configs, trainer=cpu: the same numbers, whether trained here or in launcher jobs.
    assert table(launched["csv"]) == table(here["csv"])
    rows = read_csv(launched["csv"])
    assert {(r["row"], r["status"]) for r in rows} == {("none", "ok"), ("oversample", "ok"), ("broken", "failed")}
    assert MISSING_WEIGHTS in next(r["error"] for r in rows if r["row"] == "broken")
    md = launched["markdown"].read_text()
    assert "| broken | 0/1" in md and "broken seed 0: **failed**" in md
    for row in ("none", "oversample", "broken"):
        run_dir = out / "runs" / row / "seed0"
        assert (run_dir / LAUNCH_CONFIG).is_file() and (run_dir / "row.json").is_file()
        assert (run_dir / ".hydra" / "overrides.yaml").read_text().strip().endswith(f"+ablation_run={row}/seed0")
    assert sorted(p.name for p in (out / "runs").iterdir() if p.is_dir()) == ["broken", "none", "oversample"]
    assert len(list((out / "launch").glob("multirun_*.log"))) == 1
    return cfg, here


def test_ablation_stage3_on_a_launcher_matches_in_process(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    """launcher=basic: one subprocess runs the multirun's jobs in turn. A re-run of the finished rows
    launches nothing and rebuilds the same report (the slow submitit test below re-launches a failed run)."""
    cfg, here = launched_matches_in_process(tmp_path, tiny_synthetic_root, "basic")
    out = Path(cfg.out_dir)
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")}
    cfg.rows = ["none", "oversample"]
    again = run_ablation(cfg)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")} == finished
    assert len(list((out / "launch").glob("multirun_*.log"))) == 1  # nothing was pending
    assert table(again["csv"]) == table(here["csv"])  # the report reads every run folder, broken's error.json included


@pytest.mark.slow
def test_ablation_stage3_on_submitit_local_resumes(tmp_path: Path, tiny_synthetic_root: Path) -> None:
    """launcher=submitit_local: each run a submitit job. Resume exactly as in-process: finished runs
    are skipped, the failed one is handed to the launcher again (alone) and fails again."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    cfg, here = launched_matches_in_process(tmp_path, tiny_synthetic_root, "submitit_local")
    out = Path(cfg.out_dir)
    assert len(list((out / "launch" / "submitit").glob("*_0_log.out"))) == 3  # one submitit job per run
    finished = {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")}
    again = run_ablation(cfg)
    assert {p: p.stat().st_mtime_ns for p in (out / "runs").glob("*/seed*/metrics.json")} == finished
    logs = sorted((out / "launch").glob("multirun_*.log"))
    assert len(logs) == 2 and logs[-1].read_text().splitlines()[0].endswith("+ablation_run=broken/seed0")
    assert table(again["csv"]) == table(here["csv"])


def test_launcher_options_and_command(tmp_path: Path) -> None:
    """conf/launcher/*.yaml keys become hydra.launcher.* overrides; each job's folder is runs/<row>/seed<k>."""
    cfg = compose_config(
        "ablate",
        [
            f"paths.output_dir={tmp_path}",
            "name=x",
            "launcher=submitit_slurm",
            "launcher.partition=gpu",
            "launcher.timeout_min=90",
            "+launcher.additional_parameters.mail-type=END",
        ],
    )
    options = launcher_options(cfg)
    assert options["partition"] == "gpu" and options["submitit_folder"] == f"{tmp_path}/ablate/x/launch/submitit"
    overrides = option_overrides(options)
    assert "hydra.launcher.partition='gpu'" in overrides and "hydra.launcher.timeout_min=90" in overrides
    assert "++hydra.launcher.additional_parameters.mail-type='END'" in overrides
    assert not any(o.startswith("hydra.launcher.account=") for o in overrides)  # null: the plugin's default
    pending = [
        PendingRun(row=r, seed=s, run_dir=tmp_path / r / f"seed{s}", config=cfg)
        for r in ("none", "focal")
        for s in (0, 1)
    ]
    command = launch_command(pending, runs_dir=tmp_path / "runs", plugin="submitit_slurm", options=options)
    assert command[-1] == "+ablation_run=none/seed0,none/seed1,focal/seed0,focal/seed1"
    assert "hydra.sweep.subdir=${ablation_run}" in command and "hydra/launcher=submitit_slurm" in command
    # The overrides compose: plugin name and every option key are valid for Hydra.
    compose_config("train_classifier", command[command.index("--multirun") + 1 : -1])


def test_bad_launcher_option_fails_before_any_work(tmp_path: Path) -> None:
    cfg = compose_config(
        "ablate", [f"paths.output_dir={tmp_path}", "rows=[none]", "launcher=submitit_local", "+launcher.partition=gpu"]
    )  # a Slurm-only option
    with pytest.raises(ValueError, match=r"launcher=submitit_local: .*hydra\.launcher\.partition"):
        run_ablation(cfg)
    ddp = compose_config("ablate", [f"paths.output_dir={tmp_path}", "rows=[none]", "launcher=basic", "trainer=ddp_cpu"])
    with pytest.raises(ValueError, match=r"one device.*2 processes"):  # DDP ranks would re-run the whole multirun
        run_ablation(ddp)
    gpu = compose_config(
        "ablate", [f"paths.output_dir={tmp_path}", "rows=[none]", "launcher=submitit_local", "trainer=gpu"]
    )
    with pytest.raises(ValueError, match=r"launcher.gpus_per_node=1"):  # else submitit hides the GPUs from the jobs
        run_ablation(gpu)
    assert not Path(cfg.out_dir).exists()
