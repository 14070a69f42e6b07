"""`aiprov init --discover` against a real sandbox host (podman, systemd, no GPU):
the probe really runs there, and a GPU-less host is named, not guessed."""

import pytest
from click.testing import CliRunner

from aiprov import runner, sandbox
from aiprov.cli import main

pytestmark = pytest.mark.sandbox

PREFIX = "aiprov-discover"


def test_a_host_without_a_gpu_is_named_and_nothing_written(podman_image, tmp_path):
    try:
        (host,) = sandbox.up(1, "debian12", tmp_path / "sandbox", prefix=PREFIX)
        target = tmp_path / "fleet"
        result = CliRunner().invoke(
            main,
            ["init", str(target), "--discover", "--profile", "qwen3-32b-2x",
             "--connection", "containers.podman.podman", host.name],
        )  # fmt: skip
    finally:
        sandbox.down(prefix=PREFIX)
    assert result.exit_code == runner.EXIT_HOST_FAILED, result.output
    assert f"{host.name}: left out: no NVIDIA GPU" in result.output
    assert "nothing written" in result.output
    assert not target.exists()


def test_a_host_that_cannot_be_asked_exits_3(tmp_path):
    result = CliRunner().invoke(
        main,
        ["init", str(tmp_path / "fleet"), "--discover", "--profile", "qwen3-32b-2x",
         "--connection", "containers.podman.podman", "aiprov-discover-absent"],
    )  # fmt: skip
    assert result.exit_code == runner.EXIT_HOST_UNREACHABLE, result.output
    assert "aiprov-discover-absent: left out: could not be asked" in result.output
