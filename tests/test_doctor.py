"""aiprov doctor: the probe parser against a real GPU host's output, and the CLI."""

import json
from pathlib import Path

from click.testing import CliRunner

from aiprov import doctor, runner
from aiprov.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
# Captured by tests/gpu_host/run.sh on an H200 host (Ubuntu 24.04, open kernel
# module 580.159.04, CUDA 13.0): the probe's raw output and doctor's JSON.
H200 = "h200-ubuntu2404-driver580"


def _probe() -> str:
    return (FIXTURES / f"{H200}.probe.txt").read_text()


def test_real_h200_probe_parses():
    report = doctor.parse_probe("gpu-host", _probe())
    assert report.error is None
    assert report.os == {
        "pretty_name": "Ubuntu 24.04.3 LTS",
        "version_id": "24.04",
        "id": "ubuntu",
    }
    assert report.kernel == "6.18.44-fc-v657-gpu"
    assert report.secure_boot is None  # no EFI variables in that VM
    assert report.nouveau_loaded is False
    assert report.driver == {
        "version": "580.159.04",
        "kernel_module": "open",
        "source": "/proc/driver/nvidia/version",
    }
    assert report.gpus == [
        doctor.Gpu(
            index=0,
            name="NVIDIA H200",
            memory_mib=143771,
            bus_id="00000000:00:06.0",
            persistence_mode=True,
            driver_version="580.159.04",
        )
    ]
    assert report.pci_gpus == ["0000:00:06.0"]
    assert report.nvswitches == []
    assert report.cuda_toolkit == {
        "path": "/usr/local/cuda/bin/nvcc",
        "release": "13.0",
        "version": "13.0.88",
    }


def test_real_h200_json_is_stable():
    """The JSON document is a documented interface: same input, same document."""
    report = doctor.check("gpu-host", _probe(), {}, doctor.role_defaults())
    expected = json.loads((FIXTURES / f"{H200}.doctor.json").read_text())
    assert doctor.to_json([report]) == expected
    assert expected["schema"] == doctor.SCHEMA


def test_h200_against_the_default_expectations():
    report = doctor.check("gpu-host", _probe(), {}, doctor.role_defaults())
    assert report.missing == [
        "driver 580.159.04 is loaded, expected branch 550",
        "nvcc 13.0, the inventory expects CUDA toolkit 12.4",
    ]
    assert doctor.exit_code([report]) == runner.EXIT_HOST_FAILED


def test_h200_matches_an_inventory_that_describes_it():
    host_vars = {
        "nvidia_driver_branch": "580",
        "nvidia_driver_version": "580.159.04",
        "cuda_toolkit_version": "13.0",
        "aiprov_gpu_count": 1,
        "aiprov_gpu_memory_gib": 141,
        "aiprov_gpu_nvswitch": False,
    }
    report = doctor.check("gpu-host", _probe(), host_vars, doctor.role_defaults())
    assert report.missing == []
    assert doctor.exit_code([report]) == runner.EXIT_OK


def test_h200_count_memory_and_nvswitch_gaps():
    host_vars = {
        "nvidia_driver_branch": "580",
        "cuda_toolkit_version": "13.0",
        "aiprov_gpu_count": 8,
        "aiprov_gpu_memory_gib": 192,
        "aiprov_gpu_nvswitch": True,
    }
    report = doctor.check("gpu-host", _probe(), host_vars, doctor.role_defaults())
    assert report.missing == [
        "1 GPU(s) visible, expected 8",
        "GPU 0 has 143771 MiB, expected 192 GiB",
        "the inventory expects NVSwitches, none are visible",
    ]


def test_gpu_csv_rows_and_noise():
    text = (
        "0, NVIDIA A100-SXM4-80GB, 81920, 00000000:07:00.0, Disabled, 550.163.01\n"
        "1, NVIDIA A100-SXM4-80GB, [N/A], 00000000:0F:00.0, [N/A], 550.163.01\n"
        "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
        '2, "NVIDIA L20, rev B", 46068, 00000000:10:00.0, Enabled, 550.163.01\n'
    )
    gpus = doctor.parse_gpus(text)
    assert [(g.index, g.memory_mib, g.persistence_mode) for g in gpus] == [
        (0, 81920, False),
        (1, None, None),
        (2, 46068, True),
    ]
    assert gpus[2].name == "NVIDIA L20, rev B"


def test_proprietary_module_version_line():
    text = (
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.14  Thu Feb 22 01:44:30 UTC 2024\n"
    )
    assert doctor.parse_proc_version(text) == {
        "version": "550.54.14",
        "kernel_module": "proprietary",
    }


def _no_driver_probe(**sections: str) -> str:
    base = {
        "os-release": 'ID=debian\nVERSION_ID="13"',
        "kernel": "6.12.48+deb13-amd64",
        "secure-boot": " 6 0 0 0 1",
        "nouveau": "loaded",
        "pci": "0000:07:00.0 0x030200\n0000:0f:00.0 0x030200\n0000:c3:00.0 0x068000",
        "gpus": "",
    }
    base.update(sections)
    return "".join(f"### {name}\n{body}\n" for name, body in base.items()) + "### end\n"


def test_fresh_host_with_nouveau_secure_boot_and_nvswitch():
    report = doctor.check("a100-01", _no_driver_probe(), {}, doctor.role_defaults())
    assert report.secure_boot is True
    assert report.pci_gpus == ["0000:07:00.0", "0000:0f:00.0"]
    assert report.nvswitches == ["0000:c3:00.0"]
    assert report.missing == [
        "Secure Boot is on: DKMS modules load only if signed with an enrolled MOK",
        "nouveau is loaded: reboot after the nouveau role blacklisted it",
        "no NVIDIA driver is loaded (expected branch 550)",
        "2 GPU(s) on the PCI bus that the driver does not show",
        "1 NVSwitch(es), nvidia-fabricmanager is not installed",
        "no nvcc, the inventory expects CUDA toolkit 12.4",
    ]


def test_truncated_probe_output_is_an_error():
    report = doctor.check("h", "### os-release\nID=debian\n", {}, doctor.role_defaults())
    assert report.error == "the probe's output is incomplete"
    assert doctor.exit_code([report]) == runner.EXIT_HOST_UNREACHABLE


def test_cli_missing_inventory_is_bad_input(tmp_path):
    result = CliRunner().invoke(main, ["doctor", "-i", str(tmp_path / "nope")])
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert "no such file or directory" in result.output


def test_cli_doctor_on_this_machine(tmp_path):
    """The whole path for real: ansible-runner runs the probe here (local connection)."""
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    here:\n      ansible_connection: local\n      aiprov_gpu_count: 0\n"
    )
    result = CliRunner().invoke(main, ["doctor", "-i", str(inventory), "--json"])
    document = json.loads(result.output)
    host = document["hosts"][0]
    assert host["host"] == "here" and host["reachable"] and host["error"] is None
    assert host["kernel"]
    # This test machine has no NVIDIA driver: doctor says so and exits 2.
    assert host["driver"]["version"] is None
    assert "no NVIDIA driver is loaded (expected branch 550)" in host["missing"]
    assert result.exit_code == runner.EXIT_HOST_FAILED
