"""`aiprov init --discover` and the GPU family table, over probe answers of each family.

tests/fixtures/discover/ holds probe answers modelled on the captured one (its
README says how); the H200 answer (tests/fixtures/doctor/) is a real capture.
"""

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from aiprov import discover, doctor, gpu_families, gpu_probe, inventory, runner, validate
from aiprov.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
DISCOVER = FIXTURES / "discover"
H200 = FIXTURES / "doctor" / "h200-ubuntu2404-driver580.probe.txt"


def probe(name: str) -> str:
    return (DISCOVER / f"{name}.probe.txt").read_text()


def report(name: str) -> doctor.HostReport:
    return doctor.parse_probe(name, probe(name))


# fixture: family, GPUs, MiB, NVSwitches, memory source
FAMILIES = {
    "h100-hgx-8x": ("h100", 8, 81559, 4, "nvidia-smi"),
    "h100-nvl-2x": ("h100", 2, 95830, 0, "nvidia-smi"),
    "h800-hgx-8x": ("h800", 8, 81559, 4, "nvidia-smi"),
    "h20-hgx-8x": ("h20", 8, 97871, 4, "nvidia-smi"),
    "a100-hgx-8x": ("a100", 8, 81920, 6, "nvidia-smi"),
    "a800-hgx-8x": ("a800", 8, 81920, 6, "nvidia-smi"),
    "a800-hgx-8x-nodriver": ("a800", 8, 81920, 6, "the family table"),
    "l20-pcie-8x": ("l20", 8, 46068, 0, "nvidia-smi"),
    "l40s-pcie-4x": ("l40s", 4, 46068, 0, "nvidia-smi"),
    "a10-pcie-4x": ("a10", 4, 23028, 0, "nvidia-smi"),
    "rtx4090-pcie-8x": ("rtx4090", 8, 24564, 0, "nvidia-smi"),
}


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_each_family_is_found_with_its_gpus(name):
    family, count, mib, switches, source = FAMILIES[name]
    found = discover.identify_host(report(name))
    assert found.problem is None
    assert (found.family, found.count, found.memory_mib, found.nvswitches) == (
        family,
        count,
        mib,
        switches,
    )
    assert found.memory_source == source
    assert found.memory_gib == gpu_families.memory_gib(mib)


def test_the_captured_h200_is_an_h200():
    found = discover.identify_host(doctor.parse_probe("gpu-host", H200.read_text()))
    assert (found.family, found.count, found.memory_mib, found.driver) == (
        "h200",
        1,
        143771,
        "580.159.04",
    )
    assert found.memory_gib == 140.4


def test_a_host_without_a_driver_is_named_by_pci_id():
    found = discover.identify_host(report("a800-hgx-8x-nodriver"))
    assert found.model.name == "NVIDIA A800-SXM4-80GB" and found.driver is None
    assert "no driver answered" in found.notes[0]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("b200-hgx-8x", ["NVIDIA B200 (PCI device 0x2901)", "no GPU family lists", "h200"]),
        ("mixed-l40s-a10", ["several models", "GPU 0: NVIDIA L40S", "GPU 1: NVIDIA A10"]),
        ("no-gpu", ["no NVIDIA GPU"]),
    ],
)
def test_unknown_mixed_and_missing_gpus_are_refused_not_guessed(name, words):
    found = discover.identify_host(report(name))
    assert found.family is None and found.reachable
    for word in words:
        assert word in found.problem


def test_an_unreachable_host_says_so():
    found = discover.identify_host(doctor.unreachable("gone", "ssh: connect refused"))
    assert not found.reachable and "ssh: connect refused" in found.problem


# ---- targets ----------------------------------------------------------------


def test_targets_are_written_as_for_ssh(tmp_path):
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text("# the GPU rack\nroot@10.0.0.11:2222\n\n  gpu02  # spare\n[fe80::1]\n")
    found = discover.targets(["admin@gpu01"], hosts_file)
    assert found == [
        discover.Target("gpu01", "admin", None),
        discover.Target("10.0.0.11", "root", 2222),
        discover.Target("gpu02"),
        discover.Target("fe80::1"),
    ]
    assert discover.connection_vars(found[1], "ssh") == {
        "ansible_user": "root",
        "ansible_port": 2222,
    }
    assert discover.connection_vars(found[2], "local") == {"ansible_connection": "local"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "needs hosts"),
        (["a b"], "is not [user@]host[:port]"),
        (["gpu01:70000"], "out of 1-65535"),
        (["root@gpu01", "admin@gpu01"], "given twice"),
    ],
)
def test_bad_targets_are_refused(args, message):
    with pytest.raises(discover.DiscoverError, match=re.escape(message)):
        discover.targets(args, None)


def test_a_bad_line_of_the_hosts_file_is_named(tmp_path):
    hosts_file = tmp_path / "hosts.txt"
    hosts_file.write_text("gpu01\nuser@@gpu02\n")
    with pytest.raises(discover.DiscoverError, match=re.escape(f"{hosts_file}:2: 'user@@gpu02'")):
        discover.targets([], hosts_file)


# ---- the plan and the written inventory -------------------------------------


def fake_probes(answers: dict[str, str]):
    def run_probes(hosts, connection):
        return [
            doctor.parse_probe(t.name, answers[t.name])
            if t.name in answers
            else doctor.unreachable(t.name, "no answer")
            for t in hosts
        ]

    return run_probes


# Hosts with a driver keep its branch (580 here); one without gets the profile's.
ALL_HOSTS = sorted(FAMILIES)


@pytest.mark.parametrize("profile", ["l20-8x", "a10-4x", "a100-8x", "qwen3-32b-2x"])
def test_every_family_gets_an_inventory_that_validates(tmp_path, monkeypatch, profile):
    answers = {name: probe(name) for name in ALL_HOSTS}
    monkeypatch.setattr(discover, "run_probes", fake_probes(answers))
    hosts = [discover.Target(name, "root") for name in ALL_HOSTS]
    result = discover.discover(tmp_path / "fleet", hosts, profile)
    assert validate.errors(result.problems) == []
    assert result.exit_code == runner.EXIT_OK
    loaded = inventory.load(str(tmp_path / "fleet"))
    for name in ALL_HOSTS:
        family, count, mib, switches, _ = FAMILIES[name]
        host = loaded.host(name)
        assert host.groups == [family]
        assert host.vars["aiprov_gpu_count"] == count
        assert host.vars["aiprov_gpu_memory_gib"] == gpu_families.memory_gib(mib)
        assert host.vars["aiprov_gpu_nvswitch"] is (switches > 0)
        assert host.vars["ansible_user"] == "root"
        services = host.vars["vllm_service_services"]
        used = [gpu for s in services for gpu in s["gpus"]]
        assert all(0 <= gpu < count for gpu in used)
        # Each service got GPUs of its own, except pooling ones, which share one.
        generative = [gpu for s in services if s.get("runner") != "pooling" for gpu in s["gpus"]]
        assert len(generative) == len(set(generative))


def test_the_plan_uses_the_fewest_gpus_that_fit(tmp_path, monkeypatch):
    """Qwen3-235B-A22B AWQ (about 117 GiB of weights): TP 4 on 44.9 GiB L20s, TP 2 on
    79.6 GiB H100s; GLM-4.5V AWQ TP 2 and TP 1; the embedding and reranker share a GPU."""
    catalog = discover.load_catalog("l20-8x")
    plans = {}
    for name in ("l20-pcie-8x", "h100-hgx-8x"):
        services, notes = discover.plan_services(discover.identify_host(report(name)), catalog)
        assert notes == []
        plans[name] = {s["name"]: (s["gpus"], s["tensor_parallel_size"]) for s in services}
    assert plans["l20-pcie-8x"] == {
        "llm": ([0, 1, 2, 3], 4),
        "vlm": ([4, 5], 2),
        "embedding": ([6], 1),
        "reranker": ([6], 1),
    }
    assert plans["h100-hgx-8x"] == {
        "llm": ([0, 1], 2),
        "vlm": ([2], 1),
        "embedding": ([3], 1),
        "reranker": ([3], 1),
    }


def test_a_tensor_parallel_size_must_divide_the_heads():
    """GLM-4.5V has 96 attention heads and 8 KV heads: on a 3-GPU host TP 3 is never
    tried (TP sizes are powers of two), and TP 2 fits 45 GiB cards."""
    found = discover.identify_host(report("l40s-pcie-4x"))
    found.count = 3
    catalog = discover.load_catalog("l20-8x")
    catalog.services = [s for s in catalog.services if s["name"] == "vlm"]
    services, notes = discover.plan_services(found, catalog)
    assert [(s["gpus"], s["tensor_parallel_size"]) for s in services] == [([0, 1], 2)]
    assert notes == []


def test_what_does_not_fit_is_left_out_with_a_note():
    found = discover.identify_host(report("a10-pcie-4x"))
    services, notes = discover.plan_services(found, discover.load_catalog("l20-8x"))
    assert [s["name"] for s in services] == ["vlm"]
    assert any("llm (qwen3-235b-a22b-awq) does not fit" in note for note in notes)
    assert any("embedding (qwen3-embedding-4b) has no room" in note for note in notes)


def test_a_max_model_len_the_kv_cache_cannot_hold_is_lowered():
    """One RTX 4090 (23.9 GiB) holds Qwen3-32B-AWQ's weights but not 26624 tokens of KV
    cache at TP 1: it takes TP 2 (divides 64 heads and 8 KV heads) and keeps its length."""
    found = discover.identify_host(report("rtx4090-pcie-8x"))
    services, _ = discover.plan_services(found, discover.load_catalog("qwen3-32b-2x"))
    (llm,) = services
    assert llm["tensor_parallel_size"] == 2 and llm["max_model_len"] == 26624
    found.count = 1
    (alone,), _ = discover.plan_services(found, discover.load_catalog("qwen3-32b-2x"))
    assert alone["tensor_parallel_size"] == 1
    assert 4096 <= alone["max_model_len"] < 26624 and alone["max_model_len"] % 1024 == 0


def test_left_out_hosts_are_named_and_the_rest_written(tmp_path, monkeypatch):
    answers = {"gpu01": probe("h20-hgx-8x"), "cpu01": probe("no-gpu"), "b01": probe("b200-hgx-8x")}
    monkeypatch.setattr(discover, "run_probes", fake_probes(answers))
    hosts = discover.targets(["gpu01", "cpu01", "b01"], None)
    result = discover.discover(tmp_path / "fleet", hosts, "l20-8x")
    assert result.exit_code == runner.EXIT_HOST_FAILED
    written = yaml.safe_load((tmp_path / "fleet" / "hosts.yml").read_text())
    assert written == {"all": {"children": {"h20": {"hosts": {"gpu01": None}}}}}
    assert not (tmp_path / "fleet" / "host_vars" / "cpu01.yml").exists()


def test_nothing_is_written_when_no_host_is_placed(tmp_path, monkeypatch):
    monkeypatch.setattr(discover, "run_probes", fake_probes({"cpu01": probe("no-gpu")}))
    result = discover.discover(tmp_path / "fleet", [discover.Target("cpu01")], "l20-8x")
    assert result.written == [] and result.exit_code == runner.EXIT_HOST_FAILED
    assert not (tmp_path / "fleet").exists()
    monkeypatch.setattr(discover, "run_probes", fake_probes({}))
    result = discover.discover(tmp_path / "fleet", [discover.Target("gone")], "l20-8x")
    assert result.exit_code == runner.EXIT_HOST_UNREACHABLE


def test_a_driverless_host_gets_the_profiles_branch(tmp_path, monkeypatch):
    bare = probe("a800-hgx-8x-nodriver")
    monkeypatch.setattr(discover, "run_probes", fake_probes({"gpu01": bare}))
    discover.discover(tmp_path / "fleet", [discover.Target("gpu01")], "l20-8x")
    values = yaml.safe_load((tmp_path / "fleet" / "host_vars" / "gpu01.yml").read_text())
    assert values["nvidia_driver_branch"] == discover.load_catalog("l20-8x").driver_branch
    assert "cuda_toolkit_version" not in values


def test_the_found_driver_branch_is_kept(tmp_path, monkeypatch):
    monkeypatch.setattr(discover, "run_probes", fake_probes({"gpu-host": H200.read_text()}))
    discover.discover(tmp_path / "fleet", [discover.Target("gpu-host")], "qwen3-32b-2x")
    values = yaml.safe_load((tmp_path / "fleet" / "host_vars" / "gpu-host.yml").read_text())
    assert values["nvidia_driver_branch"] == "580"
    assert values["aiprov_gpu_memory_gib"] == 140.4


# ---- the CLI ----------------------------------------------------------------


def test_cli_writes_the_inventory_and_says_what_it_found(tmp_path, monkeypatch):
    answers = {"gpu01": probe("l20-pcie-8x"), "cpu01": probe("no-gpu")}
    monkeypatch.setattr(discover, "run_probes", fake_probes(answers))
    target = tmp_path / "fleet"
    result = CliRunner().invoke(
        main, ["init", str(target), "--discover", "--profile", "l20-8x", "root@gpu01", "cpu01"]
    )
    assert result.exit_code == runner.EXIT_HOST_FAILED, result.output
    assert "gpu01: group l20, 8 x NVIDIA L20, 46068 MiB (44.9 GiB, nvidia-smi)" in result.output
    assert "cpu01: left out: no NVIDIA GPU" in result.output
    assert f"wrote {target}/host_vars/gpu01.yml" in result.output
    assert "the written inventory passes aiprov validate" in result.output
    again = CliRunner().invoke(main, ["validate", "-i", str(target)])
    assert again.exit_code == 0, again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--profile", "l20-8x", "gpu01"], "are for --discover only"),
        (["--profile", "l20-8x", "--connection", "local"], "are for --discover only"),
        (["--profile", "l20-8x", "--discover"], "--discover needs hosts"),
        (["--profile", "nope", "--discover", "gpu01"], "unknown profile 'nope'"),
    ],
)
def test_cli_refuses_bad_input_before_asking_a_host(tmp_path, monkeypatch, args, message):
    monkeypatch.setattr(discover, "run_probes", None)  # asking a host would fail the test
    result = CliRunner().invoke(main, ["init", str(tmp_path / "fleet"), *args])
    assert result.exit_code == runner.EXIT_BAD_INPUT
    assert message in result.output


# ---- doctor: a GPU of another family ---------------------------------------


def family_vars(tmp_path, group: str) -> dict:
    (tmp_path / "hosts.yml").write_text(
        f"all:\n  children:\n    {group}:\n      hosts:\n        g1:\n"
    )
    return inventory.load(str(tmp_path)).host("g1").vars


def test_doctor_names_the_group_and_the_model_found(tmp_path):
    host_vars = family_vars(tmp_path, "h200")
    where = f"{tmp_path}/hosts.yml"
    checked = doctor.check("g1", probe("h100-hgx-8x"), host_vars, doctor.role_defaults(), where)
    assert checked.missing[0] == (
        f"{where}: g1: GPU 0, 1, 2, 3, 4, 5, 6, 7 is NVIDIA H100 80GB HBM3, not a model of its "
        "family group h200 (NVIDIA H200, NVIDIA H200 NVL); move the host to group h100"
    )


def test_doctor_names_an_unlisted_model_and_a_driverless_one(tmp_path):
    host_vars = family_vars(tmp_path, "h100")
    unlisted = doctor.check("g1", probe("b200-hgx-8x"), host_vars, {}, "hosts.yml")
    assert "is NVIDIA B200, not a model of its family group h100" in unlisted.missing[0]
    assert "no GPU family lists this model" in unlisted.missing[0]
    bare = doctor.check("g1", probe("a800-hgx-8x-nodriver"), host_vars, {}, "hosts.yml")
    assert "is PCI device 0x20f3 (no driver to name it)" in bare.missing[0]
    assert "move the host to group a800" in bare.missing[0]


def test_doctor_is_quiet_when_the_model_matches(tmp_path):
    for group, name in [("h100", "h100-nvl-2x"), ("a800", "a800-hgx-8x-nodriver")]:
        checked = doctor.check("g1", probe(name), family_vars(tmp_path, group), {}, "hosts.yml")
        assert not any("family group" in gap for gap in checked.missing)


def test_a_host_may_list_its_own_models(tmp_path):
    host_vars = family_vars(tmp_path, "h100")
    host_vars["aiprov_gpu_models"] = [{"name": "NVIDIA B200"}]
    checked = doctor.check("g1", probe("b200-hgx-8x"), host_vars, {}, "hosts.yml")
    assert not any("family group" in gap for gap in checked.missing)


# ---- the family table and the probe's PCI column -----------------------------


def test_the_family_table_is_consistent():
    names, ids = [], []
    for family in gpu_families.families().values():
        first = family.models[0]
        assert family.vars["aiprov_gpu_family"] == family.name
        assert family.vars["aiprov_gpu_memory_gib"] == gpu_families.memory_gib(first.memory_mib)
        assert family.vars["aiprov_gpu_nvswitch"] is (first.board == "sxm")
        names += [m.name for m in family.models]
        ids += [m.pci_device_id for m in family.models]
    assert len(names) == len(set(names)) and len(ids) == len(set(ids))
    assert set(gpu_families.names()) >= {"l20", "a10", "a100", "h100", "h800", "h20", "a800"}
    assert {"l40s", "rtx4090", "h200"} <= set(gpu_families.names())


def test_the_probe_reports_pci_device_ids_and_skips_other_functions():
    sections = gpu_probe.split_sections(probe("rtx4090-pcie-8x"))
    pci = gpu_probe.parse_pci(sections["pci"])
    assert len(pci["gpu"]) == 8 and pci["nvswitch"] == []  # the HDMI audio functions are no GPU
    assert set(gpu_probe.pci_gpu_devices(sections["pci"]).values()) == {"0x2684"}
    assert gpu_probe.pci_address("00000000:1B:00.0") == "0000:1b:00.0"
    # An answer of the probe before the device id column still parses.
    assert gpu_probe.parse_pci("0000:00:06.0 0x030200") == {"gpu": ["0000:00:06.0"], "nvswitch": []}
    assert gpu_probe.pci_gpu_devices("0000:00:06.0 0x030200") == {}


# ---- the real run on a lent H100 host ----------------------------------------

H100 = FIXTURES / "doctor" / "h100-ubuntu2404-driver580.probe.txt"
H100_RUN = (DISCOVER / "h100-gpu-host.discover.txt").read_text()


def recorded_file(name: str) -> dict:
    """A file the real run wrote, as it printed it (`--- NAME` then its text)."""
    text = H100_RUN.split(f"--- {name}\n", 1)[1]
    return yaml.safe_load(re.split(r"\n(?=--- |\$ )", text, maxsplit=1)[0])


def test_the_captured_h100_is_found_as_on_the_host():
    """The probe's answer on a real H100 (device id column included) gives what
    discover found there: the table's PCI id 0x2330 is the card's."""
    reported = doctor.parse_probe("gpu-host", H100.read_text())
    assert reported.pci_gpu_devices == {"0000:00:06.0": "0x2330"}
    found = discover.identify_host(reported)
    assert (found.family, found.model.pci_device_id, found.count, found.memory_mib) == (
        "h100",
        "0x2330",
        1,
        81559,
    )
    assert "gpu-host: group h100, 1 x NVIDIA H100 80GB HBM3, 81559 MiB (79.6 GiB" in H100_RUN


@pytest.mark.parametrize("profile", ["qwen3-32b-2x", "a10-4x"])
def test_discover_writes_from_the_captured_probe_what_it_wrote_on_the_host(
    tmp_path, monkeypatch, profile
):
    monkeypatch.setattr(discover, "run_probes", fake_probes({"gpu-host": H100.read_text()}))
    result = discover.discover(tmp_path / "fleet", [discover.Target("gpu-host")], profile, "local")
    assert result.exit_code == runner.EXIT_OK, result.problems
    for name in ("hosts.yml", "host_vars/gpu-host.yml"):
        now = yaml.safe_load((tmp_path / "fleet" / name).read_text())
        recorded = recorded_file(f"discovered-{profile}/{name}")
        # Keys are only added (cuda_toolkit_version came after the run).
        assert {key: now[key] for key in recorded} == recorded


def test_doctor_says_on_the_captured_h100_what_it_said_on_the_host(tmp_path):
    said = re.search(r"missing +(wrong/hosts\.yml: gpu-host: .*?) *\n", H100_RUN)[1]
    host_vars = family_vars(tmp_path, "h200")
    checked = doctor.check("gpu-host", H100.read_text(), host_vars, {}, "wrong/hosts.yml")
    assert checked.missing[0] == said
