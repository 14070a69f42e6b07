"""Semantic checks of the GPU roles' variables that the argument specs cannot express.

Rules of validate.RULES: a .run installer needs its version and
sha256 (the roles refuse to run an unverified installer), and a pinned driver
version must be on the requested branch.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from aiprov.inventory import Inventory
from aiprov.problems import Problem

_SHA256 = re.compile(r"^[0-9a-fA-F]{64}$")


def check_gpu_stack(inventory: Inventory) -> Iterator[Problem]:
    default = inventory.sources[-1]
    for host in inventory.hosts:
        values = host.vars
        branch = str(values.get("nvidia_driver_branch", "550"))
        version = str(values.get("nvidia_driver_version", "") or "")
        if version and not version.startswith(branch + "."):
            yield Problem(
                host.origin("nvidia_driver_version", default),
                "nvidia_driver_version",
                f"{version} is not on nvidia_driver_branch {branch}",
            )
        if values.get("nvidia_driver_method") == "runfile":
            if not version:
                yield Problem(
                    host.origin("nvidia_driver_method", default),
                    "nvidia_driver_version",
                    "the runfile method needs the exact driver version (e.g. 550.144.03)",
                )
            if not _SHA256.match(str(values.get("nvidia_driver_runfile_sha256", "") or "")):
                yield Problem(
                    host.origin("nvidia_driver_method", default),
                    "nvidia_driver_runfile_sha256",
                    "the runfile method needs the installer's sha256 (64 hex digits)",
                )
        runfile_sum = str(values.get("cuda_toolkit_runfile_sha256", "") or "")
        if values.get("cuda_toolkit_method") == "runfile" and not _SHA256.match(runfile_sum):
            yield Problem(
                host.origin("cuda_toolkit_method", default),
                "cuda_toolkit_runfile_sha256",
                "the runfile method needs the installer's sha256 (64 hex digits)",
            )
