"""`aiprov validate` catches GPU-role settings the roles would refuse at run time."""

from click.testing import CliRunner

from aiprov import runner
from aiprov.cli import main


def _validate(tmp_path, host_vars: str):
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    gpu01: {}\n")
    (tmp_path / "host_vars" / "gpu01.yml").write_text(host_vars)
    return CliRunner().invoke(main, ["validate", "-i", str(tmp_path)])


def test_runfile_without_version_or_sha256(tmp_path):
    result = _validate(tmp_path, "nvidia_driver_method: runfile\ncuda_toolkit_method: runfile\n")
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert "gpu01.yml:1: nvidia_driver_version: the runfile method needs" in result.output
    assert "nvidia_driver_runfile_sha256: the runfile method needs the installer's sha256" in (
        result.output
    )
    assert "cuda_toolkit_runfile_sha256: the runfile method needs" in result.output


def test_version_off_branch(tmp_path):
    result = _validate(tmp_path, 'nvidia_driver_branch: "550"\nnvidia_driver_version: 580.95.05\n')
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert "nvidia_driver_version: 580.95.05 is not on nvidia_driver_branch 550" in result.output


def test_complete_runfile_settings_pass(tmp_path):
    result = _validate(
        tmp_path,
        "nvidia_driver_method: runfile\n"
        "nvidia_driver_version: 550.144.03\n"
        f"nvidia_driver_runfile_sha256: {'a' * 64}\n",
    )
    assert result.exit_code == 0, result.output
