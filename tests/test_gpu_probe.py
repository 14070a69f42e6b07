"""aiprov.gpu_probe: the GPU detection `aiprov doctor` and the nvidia_driver role share.

The role runs the same probe script (its DRIVER_SECTIONS only) and reads the
answer with driver_facts; doctor reads every section with parse_probe. Real
captured output: an H200 host's probe (tests/fixtures/doctor/).
"""

from __future__ import annotations

import importlib.util
import shlex
import subprocess
from pathlib import Path

import pytest

from aiprov import doctor, gpu_probe, paths

FIXTURES = Path(__file__).parent / "fixtures" / "doctor"
H200_PROBE = (FIXTURES / "h200-ubuntu2404-driver580.probe.txt").read_text()


def _answer(**sections: str) -> str:
    return "".join(f"### {name}\n{body}\n" for name, body in sections.items()) + "### end\n"


def test_real_h200_probe_gives_the_role_the_facts_doctor_reports():
    facts = gpu_probe.driver_facts(H200_PROBE)
    assert facts == {
        "driver_version": "580.159.04",
        "driver_source": "/proc/driver/nvidia/version",
        "kernel_module": "open",
        "gpus": ["0000:00:06.0"],
        "nvswitches": [],
        "secure_boot": False,  # that VM has no EFI variables: unknown counts as off
    }
    report = doctor.parse_probe("gpu-host", H200_PROBE)
    assert report.driver["version"] == facts["driver_version"]
    assert report.driver["source"] == facts["driver_source"]
    assert report.pci_gpus == facts["gpus"]
    assert report.nvswitches == facts["nvswitches"]


def test_the_role_s_sections_of_the_h200_answer_read_the_same():
    sections = gpu_probe.split_sections(H200_PROBE)
    sliced = _answer(**{name: sections[name] for name in gpu_probe.DRIVER_SECTIONS})
    assert gpu_probe.driver_facts(sliced) == gpu_probe.driver_facts(H200_PROBE)


def test_without_a_loaded_module_nvidia_smi_gives_the_version():
    text = _answer(
        **{
            "proc-driver-version": "",
            "gpus": "0, NVIDIA A100-SXM4-80GB, 81920, 00000000:07:00.0, Enabled, 550.163.01",
            "pci": "0000:07:00.0 0x030200",
        }
    )
    facts = gpu_probe.driver_facts(text)
    assert (facts["driver_version"], facts["driver_source"]) == ("550.163.01", "nvidia-smi")


def test_fresh_hgx_host_nvswitches_secure_boot_and_no_driver():
    text = _answer(
        **{
            "secure-boot": " 6 0 0 0 1",
            "proc-driver-version": "",
            "gpus": "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.",
            "pci": "0000:07:00.0 0x030200\n0000:0f:00.0 0x030000\n0000:c3:00.0 0x068000\n"
            "0000:07:00.1 0x040300",
        }
    )
    assert gpu_probe.driver_facts(text) == {
        "driver_version": "",
        "driver_source": "",
        "kernel_module": "",
        "gpus": ["0000:07:00.0", "0000:0f:00.0"],
        "nvswitches": ["0000:c3:00.0"],
        "secure_boot": True,
    }


def test_proprietary_module_and_secure_boot_off():
    text = _answer(
        **{
            "secure-boot": " 6 0 0 0 0",
            "proc-driver-version": "NVRM version: NVIDIA UNIX x86_64 Kernel Module  "
            "550.54.14  Thu Feb 22 01:44:30 UTC 2024",
        }
    )
    facts = gpu_probe.driver_facts(text)
    assert facts["driver_version"] == "550.54.14"
    assert facts["kernel_module"] == "proprietary"
    assert facts["secure_boot"] is False


def test_an_incomplete_answer_is_an_error():
    with pytest.raises(ValueError, match="incomplete"):
        gpu_probe.driver_facts("### pci\n0000:07:00.0 0x030200\n")


@pytest.mark.parametrize(
    ("installed", "version", "branch", "wanted"),
    [
        ("550.163.01", "550.163.01", "550", True),
        ("550.163.01", "550.144.03", "550", False),
        ("550.163.01", "", "550", True),
        ("580.159.04", "", "550", False),
        ("5500.1", "", "550", False),
        ("", "", "550", False),
    ],
)
def test_satisfies_version_then_branch(installed, version, branch, wanted):
    assert gpu_probe.satisfies(installed, version, branch) is wanted


def _run(command: str) -> subprocess.CompletedProcess:
    """As ansible.builtin.script runs it, under sh (the file is not executable here)."""
    argv = ["sh", *shlex.split(command)]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def test_the_role_s_command_asks_only_its_sections():
    command = gpu_probe.probe_command()
    assert shlex.split(command)[0] == str(paths.data_dir() / "doctor-probe.sh")
    result = _run(command)
    assert result.returncode == 0, result.stderr
    headers = [line[4:] for line in result.stdout.splitlines() if line.startswith("### ")]
    assert headers == [*gpu_probe.DRIVER_SECTIONS, "end"]
    gpu_probe.driver_facts(result.stdout)  # parses on this machine (no GPU: empty facts)


def test_doctor_s_probe_asks_every_section_and_refuses_unknown_ones():
    result = _run(str(gpu_probe.probe_script()))
    assert result.returncode == 0
    headers = [line[4:] for line in result.stdout.splitlines() if line.startswith("### ")]
    assert set(gpu_probe.DRIVER_SECTIONS) < set(headers)
    assert headers[-1] == "end" and "os-release" in headers and "nvcc" in headers
    bad = _run(gpu_probe.probe_command(["pci", "nope"]))
    assert bad.returncode == 2 and "no section 'nope'" in bad.stderr


def _plugin(kind: str, name: str):
    path = paths.roles_dir() / "nvidia_driver" / kind / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"nvidia_driver_{kind}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_role_s_plugins_are_shims_over_the_package():
    filters = _plugin("filter_plugins", "nvidia_driver").FilterModule().filters()
    assert filters == {
        "nvidia_driver_probe_facts": gpu_probe.driver_facts,
        "nvidia_driver_satisfies": gpu_probe.satisfies,
    }
    lookup = _plugin("lookup_plugins", "nvidia_driver_probe").LookupModule()
    assert lookup.run([]) == [gpu_probe.probe_command()]
    assert lookup.run(["pci"]) == [gpu_probe.probe_command(["pci"])]
