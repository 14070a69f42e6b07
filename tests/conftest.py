import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CONTAINERS_CONF = REPO / "cli" / "aiprov" / "data" / "containers.conf"


@pytest.fixture(autouse=True)
def _isolated_runs(tmp_path, monkeypatch):
    """Every test writes run artifacts under its own tmp dir."""
    monkeypatch.setenv("AIPROV_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv("CONTAINERS_CONF", os.environ.get("CONTAINERS_CONF", str(CONTAINERS_CONF)))
    # The example inventories read their vLLM API key from it.
    monkeypatch.setenv("AIPROV_VLLM_API_KEY", "test-key")


def _podman_ready() -> bool:
    if not shutil.which("podman"):
        return False
    env = dict(os.environ, CONTAINERS_CONF=str(CONTAINERS_CONF))
    probe = subprocess.run(
        ["podman", "image", "exists", "localhost/aiprov-debian12:latest"], env=env, check=False
    )
    return probe.returncode == 0


@pytest.fixture(scope="session")
def podman_image():
    if not _podman_ready():
        if os.environ.get("CI"):
            pytest.fail("podman or the aiprov-debian12 image is missing (run scripts/setup.sh)")
        pytest.skip("podman or the aiprov-debian12 image is missing (run scripts/setup.sh)")
    return "localhost/aiprov-debian12:latest"
