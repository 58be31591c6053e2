"""Shared fixtures: the node's tiers, and a `cdo-pm` pool manager process."""

import os
import pathlib
import subprocess
import sys

import pytest

import mambatiers as mt

REPO = pathlib.Path(__file__).resolve().parents[2]
XEON_MAX = REPO / "mamba" / "tests" / "data" / "xeon-max-2s.xml"


@pytest.fixture(scope="session")
def mamba():
    """This machine's tiers (no GPU probing)."""
    return mt.Mamba(gpu=False)


def _cdo_pm_binary():
    explicit = os.environ.get("CDO_PM")
    if explicit:
        return pathlib.Path(explicit)
    for profile in ("debug", "release"):
        path = REPO / "target" / profile / "cdo-pm"
        if path.exists():
            return path
    return None


@pytest.fixture
def cdo_pm(tmp_path):
    """A `cdo-pm` process; yields the environment that joins it."""
    binary = _cdo_pm_binary()
    if binary is None:
        pytest.skip("no cdo-pm binary: build it with `cargo build -p cdo --bin cdo-pm` (or set CDO_PM)")
    proc = subprocess.Popen(
        [str(binary), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    env = {}
    try:
        while len(env) < 2:
            line = proc.stdout.readline()
            assert line, "cdo-pm exited before printing its variables"
            key, _, value = line.strip().removeprefix("export ").partition("=")
            env[key] = value
        assert set(env) == {"CDO_POOL_SOCKET", "CDO_WORKFLOW_TOKEN"}
        yield env
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def run_python(code, env):
    """Runs `code` in another Python process with `env` added; returns it."""
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
