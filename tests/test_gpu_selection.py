"""The GPU roles' choices on the distributions CI cannot install from.

Runs tests/gpu_host/selection.yml: the roles' real variable files, with each
target distribution's facts, must resolve to the expected method, packages,
kernel headers, repository path, task files and CUDA_HOME. This proves the
selection, not the installs (those run only on Debian 13 in Molecule).
"""

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def test_gpu_roles_select_per_distribution():
    env = dict(os.environ, ANSIBLE_ROLES_PATH=str(REPO / "roles"), ANSIBLE_NOCOLOR="1")
    result = subprocess.run(
        [
            str(Path(sys.executable).parent / "ansible-playbook"),
            "-i",
            "localhost,",
            str(REPO / "tests" / "gpu_host" / "selection.yml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "failed=0" in result.stdout
    # One include per case: Ubuntu 22.04/24.04, Debian 12/13, Rocky 9, then branch 580 with
    # cuda-compat on Ubuntu 24.04, 570 on Debian 12, 580 with cuda-compat on Rocky 9, and
    # CentOS 8 (runfile).
    assert result.stdout.count("TASK [The roles choose what this distribution needs]") == 9
