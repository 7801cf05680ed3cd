"""Packaging facts a release depends on: the license file matches pyproject's SPDX string, the rule
environment pins released packages only (a Snakemake module copies it elsewhere: no repository paths)
and it is the one place that states the torch pin."""

from __future__ import annotations

import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
ENV = ROOT / "workflow" / "envs" / "evotrace.yaml"


def _pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def _pip_entries() -> list[str]:
    deps = yaml.safe_load(ENV.read_text())["dependencies"]
    return next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)


def test_license_file_is_the_declared_bsd_3_clause():
    project = _pyproject()["project"]
    assert project["license"] == "BSD-3-Clause" and project["license-files"] == ["LICENSE"]
    text = (ROOT / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "evotrace developers" in text
    assert "Neither the name of the copyright holder" in text
    floor = _pyproject()["build-system"]["requires"][0]
    assert floor.startswith("setuptools>=") and int(floor.split(">=")[1]) >= 77  # SPDX strings (PEP 639)


def test_rule_environment_installs_released_packages_only():
    pip = _pip_entries()
    assert not [e for e in pip if e.startswith("-") or "/" in e or e.startswith(".")], pip
    assert f"evotrace=={_pyproject()['project']['version']}" in pip


def test_the_torch_pin_is_stated_once():
    pins = [e for e in _pip_entries() if e.startswith("torch==")]
    assert len(pins) == 1
    files = subprocess.run(["git", "grep", "-l", "-I", pins[0]], cwd=ROOT, capture_output=True, text=True).stdout.split()
    assert files == ["workflow/envs/evotrace.yaml"], files
    make = subprocess.run(["make", "-n", "-B", ".venv/.installed"], cwd=ROOT, capture_output=True, text=True).stdout
    assert f"pip install -q {pins[0]}" in make  # make setup reads it from the environment file
