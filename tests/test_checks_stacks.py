"""MinerU's GPU shares in `aiprov plan`/`validate`, and the stacks' own checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from aiprov import checks_stacks, plan, stacks
from aiprov.inventory import Host, Inventory

REPO = Path(__file__).resolve().parent.parent
L20 = {"aiprov_gpu_family": "l20", "aiprov_gpu_memory_gib": 48, "aiprov_gpu_count": 8}
VLM = {
    "name": "vlm",
    "served_name": "VLM",
    "model": "/nonexistent/glm",
    "gpus": [4, 5, 6, 7],
    "tensor_parallel_size": 4,
    "gpu_memory_utilization": 0.45,
    "port": 10001,
}


def _mineru(name="vllm-server", gpus=(4, 5), util=0.1, dp=2, port=30000):
    return {
        "name": name,
        "gpus": list(gpus),
        "port": port,
        "data_parallel_size": dp,
        "gpu_memory_utilization": util,
    }


def _inventory(**host_vars) -> Inventory:
    return Inventory(sources=["inv.yml"], hosts=[Host("h1", ["l20"], dict(L20, **host_vars))])


def _problems(inventory: Inventory):
    return [str(p) for p in checks_stacks.check_mineru(inventory)] + [
        str(p) for p in checks_stacks.check_dify(inventory)
    ]


def test_mineru_shares_add_to_the_gpus_they_use():
    inventory = _inventory(
        vllm_service_services=[VLM],
        mineru_services=[_mineru(), _mineru("api", (6, 7), port=10018)],
    )
    host_plan = plan.plan_host(inventory.hosts[0], "inv.yml")
    fractions = {g.index: round(g.fraction, 2) for g in host_plan.gpus}
    assert fractions == {0: 0, 1: 0, 2: 0, 3: 0, 4: 0.55, 5: 0.55, 6: 0.55, 7: 0.55}
    names = [s.service for s in host_plan.gpus[4].shares]
    assert names == ["vlm", "mineru-vllm-server"]
    assert host_plan.gpus[4].shares[1].share_gib == pytest.approx(4.8)
    assert host_plan.problems == []


def test_mineru_pushes_a_gpu_past_the_safe_bound():
    inventory = _inventory(
        vllm_service_services=[VLM], mineru_services=[_mineru(util=0.6, gpus=(4,), dp=1)]
    )
    problems = [str(p) for p in plan.plan_host(inventory.hosts[0], "inv.yml").problems]
    assert len(problems) == 1
    assert "GPU 4: gpu_memory_utilization adds up to 1.05" in problems[0]
    assert "mineru-vllm-server" in problems[0]


def test_services_without_mineru_are_unchanged():
    inventory = _inventory(vllm_service_services=[VLM])
    assert stacks.mineru_services(inventory.hosts[0]) == []
    assert round(plan.plan_host(inventory.hosts[0], "inv.yml").gpus[4].fraction, 2) == 0.45


def test_clean_mineru_has_no_problems():
    inventory = _inventory(
        vllm_service_services=[VLM],
        mineru_services=[_mineru(), _mineru("api", (6, 7), port=10018)],
        mineru_profiles=["vllm-server"],
    )
    assert _problems(inventory) == []


@pytest.mark.parametrize(
    ("entry", "profiles", "expected"),
    [
        (_mineru(dp=1), None, "mineru_services[vllm-server].data_parallel_size: 1 replica(s)"),
        (_mineru(gpus=(7, 8)), None, "GPU 8 does not exist: host h1 has 8 GPUs"),
        (_mineru(gpus=(4, 4)), None, "[4, 4] lists a GPU twice"),
        (_mineru(util=1.5), None, "must be a fraction of the GPU's memory in (0, 1]"),
        (_mineru(port=10001), None, "10001 is already the port of vLLM service 'vlm'"),
        (_mineru(), ["gradio"], "mineru_profiles: gradio is not a service of mineru_services"),
    ],
)
def test_mineru_problems(entry, profiles, expected):
    extra = {"mineru_profiles": profiles} if profiles else {}
    inventory = _inventory(vllm_service_services=[VLM], mineru_services=[entry], **extra)
    problems = _problems(inventory)
    assert len(problems) == 1, problems
    assert expected in problems[0]
    assert problems[0].startswith("inv.yml: ")


def test_dify_without_checksum_is_an_error():
    inventory = _inventory(dify_enabled=True)
    found = list(checks_stacks.check_dify(inventory))
    assert [p.severity for p in found] == ["error"]
    assert found[0].key == "dify_source_checksum"
    good = _inventory(dify_enabled=True, dify_source_checksum="sha256:" + "a" * 64)
    assert list(checks_stacks.check_dify(good)) == []
    assert list(checks_stacks.check_dify(_inventory())) == []


def test_l20_inventory_counts_mineru_in_the_plan():
    """The shipped L20 inventory: MinerU on 4-5 and 6-7 next to the VLM, embedding, reranker."""
    from aiprov import inventory as inventory_module

    loaded = inventory_module.load(REPO / "inventories" / "l20-8x")
    host_plan = plan.plan_host(loaded.host("l20-01"), "l20-8x")
    fractions = [round(g.fraction, 2) for g in host_plan.gpus]
    assert fractions == [0.75] * 4 + [0.71, 0.71, 0.81, 0.81]
    assert not [p for p in host_plan.problems if p.severity == "error"]
    assert _problems(loaded) == []


def test_dify_warns_about_a_front_on_loopback():
    """Dify reaches the engines through the front: on loopback its containers cannot."""
    inventory = _inventory(
        dify_enabled=True, vllm_service_services=[VLM], gateway_listen="127.0.0.1"
    )
    found = list(checks_stacks.check_dify_reaches_vllm(inventory))
    assert [(p.key, p.severity) for p in found] == [("gateway_listen", "warning")]
    reachable = _inventory(dify_enabled=True, vllm_service_services=[VLM])
    assert list(checks_stacks.check_dify_reaches_vllm(reachable)) == []
