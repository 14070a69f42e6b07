"""Inventories load through Ansible's own machinery, GPU-family defaults included."""

from pathlib import Path

import pytest

from aiprov import inventory, paths
from aiprov.problems import InputError

EXAMPLES = sorted(p for p in paths.profiles_dir().iterdir() if (p / "hosts.yml").exists())


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_family_group_vars_apply_to_hosts_in_the_group(tmp_path):
    inv = write(tmp_path, {"hosts.yml": "all:\n  children:\n    a10:\n      hosts:\n        g1:\n"})
    host = inventory.load(inv).host("g1")
    assert host.vars["aiprov_gpu_family"] == "a10"
    assert host.vars["aiprov_gpu_memory_gib"] == 22.4
    assert host.vars["nvidia_driver_branch"] == "550"
    assert host.vars["cuda_toolkit_version"] == "12.4"
    assert host.vars["aiprov_gpu_models"][0]["name"] == "NVIDIA A10"
    assert host.origin("aiprov_gpu_memory_gib", "?").startswith(f"{paths.families_inventory()}:")


def test_users_group_vars_override_family_defaults(tmp_path):
    inv = write(
        tmp_path,
        {
            "hosts.yml": "all:\n  children:\n    a100:\n      hosts:\n        g1:\n        g2:\n",
            "group_vars/a100.yml": "aiprov_gpu_memory_gib: 40\n",
            "host_vars/g2.yml": "aiprov_gpu_memory_gib: 80\n",
        },
    )
    loaded = inventory.load(inv)
    assert loaded.host("g1").vars["aiprov_gpu_memory_gib"] == 40  # 40 GB A100 PCIe
    assert loaded.host("g2").vars["aiprov_gpu_memory_gib"] == 80
    assert loaded.host("g1").vars["aiprov_gpu_nvswitch"] is True  # the rest still from the family
    assert loaded.host("g1").origin("aiprov_gpu_memory_gib", "?") == f"{inv}/group_vars/a100.yml:1"


def test_hosts_outside_families_get_no_gpu_defaults(tmp_path):
    inv = write(tmp_path, {"hosts.yml": "all:\n  hosts:\n    plain:\n"})
    assert "aiprov_gpu_family" not in inventory.load(inv).host("plain").vars


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_every_example_inventory_loads(example):
    loaded = inventory.load(example)
    assert loaded.hosts


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"hosts.yml": ""}, "empty"),
        ({"hosts.yml": "all:\n  hosts: [oops\n"}, "hosts.yml"),
        ({"hosts.yml": "all:\n  children: {}\n"}, "no hosts"),
    ],
)
def test_broken_inventories_raise_input_errors(tmp_path, files, expected):
    inv = write(tmp_path, files)
    target = inv / "hosts.yml" if files["hosts.yml"] == "" else inv
    with pytest.raises(InputError) as error:
        inventory.load(target)
    assert expected in str(error.value)


def test_missing_inventory(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        inventory.load(tmp_path / "nope")
