"""lookup('nvidia_driver_probe'): the command line of aiprov's GPU probe for
ansible.builtin.script, asking the sections the role reads. A shim over
aiprov.gpu_probe, which doctor shares."""

from __future__ import annotations

from ansible.plugins.lookup import LookupBase

try:
    from aiprov import gpu_probe
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "cli"))
    from aiprov import gpu_probe

DOCUMENTATION = """
name: nvidia_driver_probe
short_description: The GPU probe's command line (aiprov.gpu_probe.probe_command)
description:
  - The probe script's path on the controller, then the sections to ask for
    (the terms; by default the ones the nvidia_driver role reads).
"""


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        sections = [str(term) for term in terms] or gpu_probe.DRIVER_SECTIONS
        return [gpu_probe.probe_command(sections)]
