"""The CI study through profiles/slurm on a real one-node Slurm (tests/slurm_cluster.py): `make
test-slurm` installs Debian's Slurm and the plugin's extra, then runs this with EVOTRACE_SLURM_TEST=1."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from evotrace.config import validate
from evotrace.search.invariants import algorithm1_violations

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from slurm_cluster import installed, local_slurm  # noqa: E402

pytestmark = [
    pytest.mark.skipif(os.environ.get("EVOTRACE_SLURM_TEST") != "1", reason="make test-slurm runs it"),
    pytest.mark.mpi,
    pytest.mark.slow,
]


def test_ci_study_on_slurm(tmp_path):
    """The CI study's trained searches, each one MPI job of W+1 tasks under a real slurmctld/slurmd."""
    assert installed(), "Slurm is not installed: run make test-slurm"
    shutil.copytree(REPO / "config", tmp_path / "config")
    config = validate(yaml.safe_load((tmp_path / "config/ci.yaml").read_text()))  # seeds expanded, defaults filled
    search, study = config["search"], config["study"]
    trained = [r for r, spec in config["runs"].items() if spec["evaluation"]["kind"] == "train"]
    venv_bin = Path(sys.executable).parent
    with local_slurm(tmp_path / "slurm") as env:
        env["PATH"] = f"{venv_bin}{os.pathsep}{env['PATH']}"
        proc = subprocess.run(
            [str(venv_bin / "snakemake"), *(f"results/{study}/{run}/candidates.parquet" for run in trained),
             "-s", str(REPO / "Snakefile"), "--profile", str(REPO / "profiles/slurm"),
             "--slurm-no-account", "--slurm-init-seconds-before-status-checks", "1",
             "--seconds-between-status-checks", "2", "--configfile", "config/ci.yaml"],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500)
        job_logs = "".join(p.read_text(errors="replace")[-1500:] for p in tmp_path.glob(".snakemake/slurm_logs/**/*.log"))
        assert proc.returncode == 0, proc.stderr[-3000:] + job_logs[-4000:]
        jobs = subprocess.run(["scontrol", "show", "job", "-o"], env=env, capture_output=True, text=True).stdout
    ranks = [line for line in jobs.splitlines() if f"NumTasks={search['workers'] + 1} " in line]
    assert trained and len(ranks) == len(trained), jobs[-2000:]
    for run in trained:
        trace = pd.read_parquet(tmp_path / f"results/{study}/{run}/candidates.parquet")
        assert len(trace) == search["candidates"], run
        assert algorithm1_violations(trace, search["population"], search["sample"], search["candidates"]) == [], run
