"""The gateway role's filters: a shim over aiprov.gateway, their one home."""

from __future__ import annotations

try:
    from aiprov import gateway, monitoring
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import gateway, monitoring


class FilterModule:
    def filters(self):
        return {
            "gateway_routes": gateway.checked_routes,
            "gateway_nginx_string": gateway.nginx_string,
            "gateway_listen": gateway.listen,
            "gateway_status_port": gateway.status_port,
            "gateway_monitoring_placement": monitoring.placement,
        }
