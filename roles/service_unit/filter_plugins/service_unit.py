"""The service_unit role's filters: a shim over aiprov.unitfile, their one home."""

from __future__ import annotations

try:
    from aiprov import unitfile
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import unitfile

QuoteError = unitfile.QuoteError


class FilterModule:
    def filters(self):
        return {
            "service_unit_quote": unitfile.quote,
            "service_unit_environment": unitfile.environment,
            "service_unit_url": unitfile.url,
        }
