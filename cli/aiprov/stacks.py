"""The compose stacks' use of a host's GPUs (role mineru), next to the vLLM services.

Pure: reads a host's variables, no click, no rich. aiprov.plan adds these
shares to each GPU's sum; aiprov.checks_stacks checks the entries themselves.
Dify runs no model on a GPU: it only calls the vLLM services.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiprov.inventory import Host, entry_origin_file, is_int

MINERU_KEY = "mineru_services"
MINERU_PROFILES_KEY = "mineru_profiles"


@dataclass
class StackService:
    """One entry of mineru_services: a vLLM engine inside a MinerU container."""

    index: int
    name: str  # vllm-server, api or gradio
    gpus: list[int]
    gpu_memory_utilization: float
    data_parallel_size: int = 1
    port: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        """The name plan and validate show: the container's name."""
        return f"mineru-{self.name}"

    def key(self, option: str) -> str:
        return f"{MINERU_KEY}[{self.name}].{option}"

    def file(self, option: str, default: str) -> str:
        return entry_origin_file(self.raw, option, default)


def mineru_services(host: Host) -> list[StackService]:
    """The well-formed entries of the host's mineru_services.

    Every defined service counts, started by default (mineru_profiles) or not:
    the others can be started any time with `docker compose --profile NAME up`.
    Malformed entries are left out; the role's argument spec reports them.
    """
    value = host.vars.get(MINERU_KEY)
    if not isinstance(value, list):
        return []
    found = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            continue
        name, gpus = entry.get("name"), entry.get("gpus")
        util = entry.get("gpu_memory_utilization")
        dp = entry.get("data_parallel_size", 1)
        port = entry.get("port")
        if not isinstance(name, str) or not isinstance(gpus, list):
            continue
        if not all(is_int(g) for g in gpus) or not is_int(dp):
            continue
        if not isinstance(util, (int, float)) or isinstance(util, bool):
            continue
        found.append(
            StackService(
                index=index,
                name=name,
                gpus=list(gpus),
                gpu_memory_utilization=float(util),
                data_parallel_size=dp,
                port=port if is_int(port) else None,
                raw=entry,
            )
        )
    return found
