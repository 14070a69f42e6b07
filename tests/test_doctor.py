"""aiprov doctor: the probe parser against a real GPU host's output, and the CLI."""

import json
from pathlib import Path
from types import SimpleNamespace

from click.testing import CliRunner

from aiprov import doctor, gpu_probe, inventory, paths, runner
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


def _holds(document, captured) -> bool:
    """Every key of `captured` is in `document` with the same value; keys may be added."""
    if isinstance(captured, dict):
        return isinstance(document, dict) and all(
            key in document and _holds(document[key], value) for key, value in captured.items()
        )
    if isinstance(captured, list):
        return (
            isinstance(document, list)
            and len(document) == len(captured)
            and all(_holds(d, c) for d, c in zip(document, captured, strict=True))
        )
    return document == captured and type(document) is type(captured)


def test_real_h200_json_is_stable():
    """The JSON document is a documented interface: same input, same document.

    The fixture was captured before keys were added (expected.gpu_family,
    expected.gpu); keys are only ever added, so it must still hold.
    """
    report = doctor.check("gpu-host", _probe(), {}, doctor.role_defaults())
    captured = json.loads((FIXTURES / f"{H200}.doctor.json").read_text())
    document = doctor.to_json([report])
    assert _holds(document, captured)
    assert captured["schema"] == doctor.SCHEMA
    added = set(document["hosts"][0]["expected"]) - set(captured["hosts"][0]["expected"])
    assert added == {"gpu_family", "gpu"}
    assert document["hosts"][0]["expected"]["gpu"] is True


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
    assert gpu_probe.parse_proc_version(text) == {
        "version": "550.54.14",
        "kernel_module": "proprietary",
    }


def _probe_text(base: dict[str, str], sections: dict[str, str]) -> str:
    """The probe's output: each section under its ### header, `sections` overriding `base`."""
    merged = base | sections
    return "".join(f"### {name}\n{body}\n" for name, body in merged.items()) + "### end\n"


def _no_driver_probe(**sections: str) -> str:
    base = {
        "os-release": 'ID=debian\nVERSION_ID="13"',
        "kernel": "6.12.48+deb13-amd64",
        "secure-boot": " 6 0 0 0 1",
        "nouveau": "loaded",
        "pci": "0000:07:00.0 0x030200\n0000:0f:00.0 0x030200\n0000:c3:00.0 0x068000",
        "gpus": "",
    }
    return _probe_text(base, sections)


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


# ---- CPU hosts (aiprov_gpu_family: cpu, like the sandbox) ---------------------

CPU = {"aiprov_gpu_family": "cpu", "aiprov_gpu_count": 0}


def _sandbox_probe(**sections: str) -> str:
    """What the probe prints in a sandbox container: Debian, no NVIDIA anything."""
    base = {
        "os-release": 'PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"\nID=debian\nVERSION_ID="12"',
        "kernel": "6.12.48+deb13-amd64",
        "secure-boot": "",
        "nouveau": "",
        "proc-driver-version": "",
        "pci": "",
        "gpus": "",
        "fabricmanager": "",
        "nvcc": "",
    }
    return _probe_text(base, sections)


def test_sandbox_inventory_hosts_are_cpu_hosts():
    loaded = inventory.load(paths.profiles_dir() / "sandbox")
    host = loaded.hosts[0]
    expected = doctor.expectations(host.vars, doctor.role_defaults())
    assert expected == doctor.Expected(
        driver_branch="",
        driver_version="",
        cuda_version="",
        gpu_count=0,
        gpu_family="cpu",
        gpu=False,
    )


def test_healthy_cpu_host_lacks_nothing():
    report = doctor.check("aiprov-sandbox-1", _sandbox_probe(), CPU, doctor.role_defaults())
    assert report.error is None
    assert report.driver["version"] is None and report.gpus == []
    assert report.cuda_toolkit["release"] is None
    assert report.missing == []
    assert doctor.exit_code([report]) == runner.EXIT_OK
    assert doctor.cpu_note(report) == (
        "aiprov-sandbox-1: CPU host (aiprov_gpu_family: cpu): "
        "no NVIDIA driver, GPU or CUDA toolkit expected"
    )


def test_cpu_host_json_says_no_gpu_is_expected():
    report = doctor.check("aiprov-sandbox-1", _sandbox_probe(), CPU, doctor.role_defaults())
    host = doctor.to_json([report])["hosts"][0]
    assert host["expected"] == {
        "driver_branch": "",
        "driver_version": "",
        "cuda_version": "",
        "gpu_count": 0,
        "gpu_memory_gib": None,
        "nvswitch": None,
        "gpu_family": "cpu",
        "gpu": False,
    }
    assert host["missing"] == []


def test_cpu_host_ignores_what_only_the_driver_cares_about():
    """A container sees its machine's kernel and PCI bus: Secure Boot, nouveau,
    GPUs on the bus and NVSwitches are not the CPU host's business."""
    report = doctor.check("cpu-box", _no_driver_probe(), CPU, doctor.role_defaults())
    assert report.secure_boot is True and report.nouveau_loaded is True
    assert report.pci_gpus and report.nvswitches
    assert report.missing == []
    assert doctor.exit_code([report]) == runner.EXIT_OK


def test_cpu_host_without_a_gpu_count_is_not_counted():
    gpus = "0, NVIDIA L20, 46068, 00000000:10:00.0, Enabled, 550.163.01"
    report = doctor.check(
        "cpu-box", _sandbox_probe(gpus=gpus), {"aiprov_gpu_family": "cpu"}, doctor.role_defaults()
    )
    assert report.missing == []


def test_cpu_host_with_a_gpu_the_inventory_says_it_lacks():
    gpus = "0, NVIDIA L20, 46068, 00000000:10:00.0, Enabled, 550.163.01"
    report = doctor.check("cpu-box", _sandbox_probe(gpus=gpus), CPU, doctor.role_defaults())
    assert report.missing == ["1 GPU(s) visible, expected 0"]
    assert doctor.exit_code([report]) == runner.EXIT_HOST_FAILED


def test_gpu_family_host_still_needs_its_driver():
    report = doctor.check(
        "l20-01", _sandbox_probe(), {"aiprov_gpu_family": "l20"}, doctor.role_defaults()
    )
    assert report.expected.gpu is True and report.expected.gpu_family == "l20"
    assert doctor.cpu_note(report) is None
    assert "no NVIDIA driver is loaded (expected branch 550)" in report.missing
    assert "no nvcc, the inventory expects CUDA toolkit 12.4" in report.missing
    assert doctor.exit_code([report]) == runner.EXIT_HOST_FAILED


def _sandbox_inventory(tmp_path: Path) -> Path:
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "sandbox.yml").write_text(
        "aiprov_gpu_family: cpu\naiprov_gpu_count: 0\n"
    )
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    sandbox:\n      hosts:\n        box-1:\n        box-2:\n"
    )
    return tmp_path


def test_cli_doctor_on_cpu_hosts_exits_0(tmp_path, monkeypatch):
    """The CLI's table and JSON for CPU hosts; the probe's output is given, no host is asked."""
    asked = []

    def fake_probe(inventory_path, limit=None, vault_options=None):
        asked.append(limit)
        return {"box-1": _sandbox_probe(), "box-2": _sandbox_probe()}

    monkeypatch.setattr(doctor, "run_probe", fake_probe)
    inv = str(_sandbox_inventory(tmp_path))
    result = CliRunner().invoke(main, ["doctor", "-i", inv])
    assert result.exit_code == runner.EXIT_OK, result.output
    assert "box-1: CPU host (aiprov_gpu_family: cpu)" in result.output
    assert "box-2: CPU host" in result.output
    assert "missing" not in result.output
    result = CliRunner().invoke(main, ["doctor", "-i", inv, "--json"])
    assert result.exit_code == runner.EXIT_OK, result.output
    hosts = json.loads(result.output)["hosts"]
    assert [(h["host"], h["expected"]["gpu"], h["missing"]) for h in hosts] == [
        ("box-1", False, []),
        ("box-2", False, []),
    ]


def test_cli_doctor_limit_that_matches_no_host_is_bad_input(tmp_path, monkeypatch):
    def fake_probe(inventory_path, limit=None, vault_options=None):
        raise AssertionError("no host may be asked")

    monkeypatch.setattr(doctor, "run_probe", fake_probe)
    inv = str(_sandbox_inventory(tmp_path))
    result = CliRunner().invoke(main, ["doctor", "-i", inv, "--limit", "gpu01"])
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert result.output.strip() == f"{inv}: --limit: 'gpu01' matches no host of the inventory"
    assert "Traceback" not in result.output


def test_a_host_the_probe_never_answered_for_is_unreachable(tmp_path, monkeypatch):
    """Ansible stopped before it asked box-2: doctor does not call that a match."""
    monkeypatch.setattr(doctor, "run_probe", lambda inv, *_, **__: {"box-1": _sandbox_probe()})
    reports = doctor.doctor(str(_sandbox_inventory(tmp_path)))
    assert [(r.host, r.reachable, r.error) for r in reports] == [
        ("box-1", True, None),
        ("box-2", False, "no answer: Ansible did not run the probe"),
    ]
    assert doctor.exit_code(reports) == runner.EXIT_HOST_UNREACHABLE


def test_limit_leaves_the_other_hosts_out(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "run_probe", lambda inv, *_, **__: {"box-2": _sandbox_probe()})
    reports = doctor.doctor(str(_sandbox_inventory(tmp_path)), limit="box-2")
    assert [r.host for r in reports] == ["box-2"]
    assert doctor.exit_code(reports) == runner.EXIT_OK


def test_ctrl_c_while_asking_exits_130_and_restores_the_signal_handlers(tmp_path, monkeypatch):
    """ansible-runner turns Ctrl-C into a cancelled run and keeps its own handlers."""
    import signal

    import ansible_runner

    def cancelled_run(**kwargs):
        signal.signal(signal.SIGINT, lambda *args: None)
        signal.signal(signal.SIGTERM, lambda *args: None)
        return SimpleNamespace(status="canceled", rc=254)

    monkeypatch.setattr(ansible_runner, "run", cancelled_run)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    result = CliRunner().invoke(main, ["doctor", "-i", str(_sandbox_inventory(tmp_path))])
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert result.exit_code == runner.EXIT_CANCELLED, result.output
    assert "cancelled" in result.output
    assert "Traceback" not in result.output
