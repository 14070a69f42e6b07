"""The locked_venv block's filters: a shim over aiprov.locks, their one home."""

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
        return {
            "locked_venv_find": locks.find_path,
            "locked_venv_missing": locks.missing,
            "locked_venv_flavour": locks.flavour,
            "locked_venv_models_tools_version": locks.models_tools_version,
        }
