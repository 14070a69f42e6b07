"""Action plugin: the playbooks' first play checks the inventory with aiprov's rules.

It runs on the controller and contacts no host: it loads the run's inventory
with aiprov's loader (the run's extra vars count, with the highest precedence,
as they do for the run), runs validate.RULES and fails with the same
`FILE: KEY: message` lines as `aiprov validate`. `aiprov bootstrap` and
`aiprov models pull` validate before starting Ansible and set
AIPROV_VALIDATED, so a run through aiprov validates once.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ansible.parsing.vault import VaultSecretsContext
from ansible.plugins.action import ActionBase
from ansible.utils.vars import load_extra_vars

try:
    from aiprov import paths
except ImportError:  # ansible-playbook from a checkout, with a Python that lacks aiprov
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "cli"))
    from aiprov import paths

from aiprov import inventory, validate
from aiprov.problems import InputError
from aiprov.vault import VaultOptions


class ActionModule(ActionBase):
    TRANSFERS_FILES = False
    _requires_connection = False

    def run(self, tmp=None, task_vars=None):
        result = super().run(tmp, task_vars)
        if os.environ.get("AIPROV_VALIDATED") == "1":
            result["msg"] = "validated by aiprov before this run"
            return result
        families = str(paths.families_inventory())
        run_sources = task_vars.get("ansible_inventory_sources", [])
        # `inventory`: check that inventory instead of the run's (many in one run).
        sources = (
            [self._task.args["inventory"]]
            if "inventory" in self._task.args
            else [s for s in run_sources if s != families]
        )
        if len(sources) != 1:
            result.update(
                failed=True, msg=f"aiprov validates one inventory; this run has {sources}"
            )
            return result
        try:
            loaded = inventory.load(
                sources[0], extra_vars=load_extra_vars(self._loader), vault_options=_vault_options()
            )
            problems = validate.validate(loaded)
        except InputError as error:
            problems = error.problems
        failing = validate.errors(problems)
        lines = [str(p) for p in problems]
        if "inventory" not in self._task.args and families not in run_sources:
            lines.append(
                f"warning: this run does not load {families}: its hosts miss the GPU-family "
                "defaults that aiprov and `aiprov validate` add (pass it as the first -i)"
            )
        result.update(problems=lines, failed=bool(failing))
        result["msg"] = "\n".join(lines) if failing else f"{len(problems)} warning(s), no errors"
        return result


def _vault_options() -> VaultOptions:
    """The run's own vault secrets, as Ansible already holds them: the password
    files and scripts it read and the passwords it prompted for
    (--ask-vault-pass, --vault-id label@prompt), which cannot be asked again."""
    current = VaultSecretsContext.current(optional=True)
    held = current.secrets if current is not None else []
    return VaultOptions(prompted=tuple((label, secret.bytes.decode()) for label, secret in held))
