"""The Snakemake workflow: dry-runs with both profiles, and one small real end-to-end study."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytestmark = pytest.mark.slow  # every test here starts Snakemake

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def without_venv_on_path() -> dict:
    """The caller's environment as a new user's shell has it: the venv neither active nor on PATH, so that
    a rule finding the project's programs only through PATH fails here as it would for them."""
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p and p != venv_bin)
    environment = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return dict(environment, PATH=path)


def snakemake(*args, cwd=REPO, env=None, timeout=600):
    environment = dict(without_venv_on_path(), **(env or {}))
    return subprocess.run([SNAKEMAKE, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, env=environment)


def planned_jobs(output: str) -> dict[str, int]:
    table = output[output.index("Job stats:"):]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M)}


@pytest.fixture
def workdir(tmp_path):
    shutil.copytree(REPO / "config", tmp_path / "config")
    return tmp_path


def workflow_args(workdir, profile, configfile="config/config.yaml"):
    return ["-s", str(REPO / "Snakefile"), "--directory", str(workdir), "--profile", str(REPO / "profiles" / profile),
            "--configfile", str(workdir / configfile)]


@pytest.mark.parametrize("profile", ["local", "polaris"])
def test_dry_run_plans_the_whole_study(workdir, profile):
    proc = snakemake(*workflow_args(workdir, profile), "-n", env={"EVOTRACE_ACCOUNT": "TestProject"})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = planned_jobs(proc.stdout)
    runs = 5  # config/config.yaml
    assert jobs["search"] == runs and jobs["setup_run"] == runs and jobs["prepare_dataset"] == 2
    assert jobs["consolidate"] == 1 and jobs["summary"] == 1
    for rq in ("rq1", "rq2", "rq3", "rq4", "rq5"):
        assert jobs[f"{rq}_tables"] == 1 and jobs[f"{rq}_figures"] == 1
    assert "mpiexec" in proc.stdout and "-n 9" in proc.stdout  # 8 workers + the master


def test_rules_find_the_project_programs_without_the_venv_on_path(workdir):
    """A new user's shell: .venv/bin/snakemake started with the venv neither active nor on PATH."""
    assert shutil.which("evotrace", path=without_venv_on_path()["PATH"]) is None
    target = "resources/data/digits.npz"
    proc = snakemake(*workflow_args(workdir, "local", "config/ci.yaml"), "--cores", "1", target)
    assert proc.returncode == 0, proc.stderr[-3000:] + (workdir / "logs/data/digits.log").read_text()
    with np.load(workdir / target) as data:
        assert len(data["x_train"]) > 0


def test_invalid_config_stops_before_any_job(workdir):
    text = (workdir / "config/config.yaml").read_text().replace("population: 100", "population: many")
    (workdir / "config/config.yaml").write_text(text)
    proc = snakemake(*workflow_args(workdir, "local"), "-n")
    assert proc.returncode != 0
    message = proc.stdout + proc.stderr
    assert "population" in message and "many" in message and "is not of type" in message


@pytest.fixture
def ci_study(workdir) -> Path:
    """The CI study's results folder, built to its report. .ci/run has just built it with the README's main
    command (`make run CONFIG=config/ci.yaml`) and names it in EVOTRACE_CI_STUDY: its outputs are checked
    instead of building the same study a second time."""
    built = os.environ.get("EVOTRACE_CI_STUDY")
    if built:
        return Path(built)
    proc = snakemake(*workflow_args(workdir, "local", "config/ci.yaml"), "--cores", "2", timeout=1500)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = workdir / "results" / "ci"
    report = snakemake(*workflow_args(workdir, "local", "config/ci.yaml"), "--report", str(results / "report.html"))
    assert report.returncode == 0, report.stderr[-3000:]
    return results


@pytest.mark.mpi
def test_small_study_end_to_end(ci_study):
    """config/ci.yaml: two real searches with transfer, simulated ones, every table, figure and the report."""
    results = ci_study
    trace = pd.read_parquet(results / "traces" / "candidates.parquet")
    assert sorted(trace["run"].unique()) == ["attn", "nb201", "sim-q4-again-seed1", "sim-q4-seed1", "sim-q4-seed2",
                                             "sim-seed1", "sim-seed2"]
    assert (trace.groupby("run").size() == 60).all()
    assert trace["donor_id"].notna().sum() > 0 and trace["stored"].sum() > 0
    reads = pd.read_parquet(results / "traces" / "tensor_reads.parquet")
    assert len(reads) > 0
    replayed = pd.read_csv(results / "tables" / "rq5" / "cache_replay.csv")
    assert {"attn", "nb201"} <= set(replayed["run"]) and set(replayed["scope"]) == {"worker", "node"}
    assert set(replayed["policy"]) == {"lru", "lfu", "popularity", "tier", "opt"}
    assert replayed["reads"].eq(replayed["run"].map(reads.groupby("run").size())).all()
    compared = pd.read_csv(results / "tables" / "rq5" / "design_comparisons.csv")
    idle = compared[compared["metric"] == "idle_fraction"].set_index("variant")
    assert list(idle.index) == ["sim", "sim-q4"] and (idle["n"] == 2).all()
    assert idle.loc["sim", "verdict"] == "baseline" and idle.loc["sim-q4", "verdict"].startswith("too few seeds")
    same = pd.read_csv(results / "tables" / "rq5" / "design_determinism.csv")
    assert len(same) == 1 and same["identical_fraction"].iloc[0] == 1.0  # a simulated search replays exactly
    for rq in ("rq1", "rq2", "rq3", "rq4", "rq5"):
        figures = list((results / "figures" / rq).glob("*.png"))
        assert figures and all(f.stat().st_size > 10_000 for f in figures)
        assert all(f.with_suffix(".pdf").exists() and f.with_suffix(".html").exists() for f in figures)
    summary = pd.read_csv(results / "tables" / "summary.csv")
    assert {"attn", "nb201"} < set(summary["run"])
    assert (results / "report.html").stat().st_size > 100_000
    html = (results / "report.html").read_text(errors="replace")
    assert "RQ5" in html and "Belady" in html and "serves" in html  # the caption's finding, filled from the table
    assert "median worker idle fraction of sim" in html  # the design finding, with its interval


@pytest.mark.mpi
def test_an_analysis_edit_reruns_the_analyses_not_the_searches(ci_study, tmp_path):
    """A finished study whose analysis options change: the tables are planned again, no search is."""
    import yaml

    config = yaml.safe_load((REPO / "config" / "ci.yaml").read_text())
    config["analysis"]["prefix_len"] = config["analysis"].get("prefix_len", 3) + 1
    edited = tmp_path / "edited.yaml"
    edited.write_text(yaml.safe_dump(config))
    root = ci_study.parent.parent
    proc = snakemake("-s", str(REPO / "Snakefile"), "--directory", str(root), "--profile", str(REPO / "profiles" / "local"),
                     "--configfile", str(edited), "-n")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    jobs = planned_jobs(proc.stdout)
    assert jobs["study_config"] == 1 and jobs["rq1_tables"] == 1 and jobs["rq5_figures"] == 1
    assert "search" not in jobs and "setup_run" not in jobs


def test_workflow_is_lint_and_format_clean():
    lint = snakemake("--lint")
    assert lint.returncode == 0, lint.stdout[-3000:]
    snakefmt = str(Path(sys.executable).parent / "snakefmt")
    fmt = subprocess.run([snakefmt, "--check", "Snakefile", "workflow/rules"], cwd=REPO, capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stderr[-2000:]
