"""The monitoring role's filters: a shim over aiprov.monitoring, their one home."""

from __future__ import annotations

try:
    from aiprov import dashboards, monitoring
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import dashboards, monitoring


class FilterModule:
    def filters(self):
        return {
            "monitoring_prometheus_config": monitoring.prometheus_config,
            "monitoring_rules": monitoring.rules,
            "monitoring_placement": monitoring.placement,
            "monitoring_dcgm_runs": monitoring.dcgm_runs,
            "monitoring_blackbox_runs": monitoring.blackbox_runs,
            "monitoring_nginx_status_url": monitoring.nginx_status_url,
            "monitoring_grafana_dashboards": dashboards.for_grafana,
            "monitoring_grafana_outdated": dashboards.grafana_outdated,
            "monitoring_grafana_datasource": dashboards.grafana_datasource,
            "monitoring_grafana_datasource_outdated": dashboards.grafana_datasource_outdated,
        }
