"""Render an inventory value on the controller, as the run will render it.

Rules use it for values the roles no longer check themselves: a key from a
file or environment lookup, a mirror URL built from other variables.
"""

from __future__ import annotations

from typing import Any

from aiprov.inventory import Host


def is_template(value: Any) -> bool:
    return isinstance(value, str) and "{{" in value


def rendered(host: Host, value: Any) -> Any:
    """`value` with its templates rendered against the host's variables.

    Raises AnsibleError (AnsibleUndefinedVariable for a variable that only the
    run defines, such as a host fact) when it cannot be rendered here.
    """
    if not is_template(value):
        return value
    from ansible.parsing.dataloader import DataLoader
    from ansible.plugins.loader import init_plugin_loader
    from ansible.template import Templar, trust_as_template
    from ansible.utils.collection_loader import AnsibleCollectionConfig

    if not AnsibleCollectionConfig.collection_finder:  # outside ansible-playbook: lookups need it
        init_plugin_loader()
    # Values loaded from inventory files are trusted already; built ones are not.
    return Templar(loader=DataLoader(), variables=host.vars).template(trust_as_template(value))
