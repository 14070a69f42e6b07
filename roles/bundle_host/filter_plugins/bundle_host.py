"""The bundle_host role's filters: a shim over aiprov.locks, their one home."""

from __future__ import annotations

try:
    from aiprov import locks
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import locks


class FilterModule:
    def filters(self):
        return {"bundle_host_servers_version": locks.bundle_servers_version}
