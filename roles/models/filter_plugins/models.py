"""The models role's filters: a shim over aiprov.host_models, their one home."""

from __future__ import annotations

try:
    from aiprov import host_models
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import host_models


class FilterModule:
    def filters(self):
        return {
            "models_host_ids": host_models.host_model_ids,
            "models_fleet_ids": host_models.fleet_model_ids,
        }
