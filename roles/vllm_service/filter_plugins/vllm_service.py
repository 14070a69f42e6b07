"""The vllm_service role's filters: a shim over aiprov.vllm_services, their one home."""

from __future__ import annotations

try:
    from aiprov import gateway, vllm_services
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import gateway, vllm_services


class FilterModule:
    def filters(self):
        return {
            "vllm_service_endpoints": vllm_services.endpoints,
            "vllm_service_front_scheme": gateway.scheme,
            "vllm_service_group_restarts": vllm_services.group_restarts,
            "vllm_service_node_addresses": vllm_services.node_addresses,
            "vllm_service_units": vllm_services.units,
        }
