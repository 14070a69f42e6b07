"""The nvidia_driver role's filters: a shim over aiprov.gpu_probe, their one home
(aiprov doctor reads the same probe with the same functions)."""

from __future__ import annotations

try:
    from aiprov import gpu_probe
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import gpu_probe


class FilterModule:
    def filters(self):
        return {
            "nvidia_driver_probe_facts": gpu_probe.driver_facts,
            "nvidia_driver_satisfies": gpu_probe.satisfies,
        }
