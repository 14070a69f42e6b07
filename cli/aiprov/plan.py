"""GPU memory plan: what each vLLM service takes on each GPU of a host.

Pure: no click, no rich. The formulas are documented with worked examples in
docs/plan.md; each one is a small function here so tests can check its numbers.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from aiprov import modelfacts, schema, stacks, vllm_services
from aiprov.inventory import Host, Inventory, entry_origin_file, is_int, origin_file
from aiprov.modelfacts import DTYPE_BYTES, ModelFacts, Quantization
from aiprov.problems import Problem

GIB = 1024**3
# Outside vLLM's share, per process and GPU: the CUDA context, created before
# vLLM measures the card (a PyTorch 2.11 process on an H200 with driver 580
# holds 612 MiB after its first allocation).
CONTEXT_GIB = 0.6
# Inside the share, besides weights and KV cache: the activation peak of the
# profiling run and the CUDA graphs.
RESERVE_GIB = 0.5
# Above this sum of --gpu-memory-utilization on one GPU, a later vLLM process
# finds less free memory than its share and refuses to start.
SAFE_FRACTION = 0.95
DEFAULT_UTILIZATION = 0.9  # vLLM's default --gpu-memory-utilization
SERVICES_KEY = "vllm_service_services"
# Online quantization methods vLLM applies to an unquantized checkpoint.
ONLINE_QUANTIZATION = {"fp8": Quantization("fp8", 8, 0), "bitsandbytes": Quantization("bnb", 4, 64)}


@dataclass
class Service:
    """One entry of vllm_service_services, with the defaults the role applies."""

    index: int
    name: str
    model: str
    gpus: list[int]
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    gpu_memory_utilization: float = DEFAULT_UTILIZATION
    max_model_len: int | None = None
    port: int | None = None
    replicas: int = 1
    runner: str | None = None
    convert: str | None = None
    quantization: str | None = None
    tool_call_parser: str | None = None
    reasoning_parser: str | None = None
    enable_auto_tool_choice: bool = False
    extra_args: list[str] = field(default_factory=list)
    multinode: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def label(self) -> str:
        # Escaped: a name with a newline must not split a FILE: KEY: message line.
        return f"{SERVICES_KEY}[{self.name.encode('unicode_escape').decode('ascii')}]"

    def key(self, option: str) -> str:
        return f"{self.label}.{option}"

    def file(self, option: str, default: str) -> str:
        """The file where this service's `option` (or the service itself) was set."""
        return entry_origin_file(self.raw, option, default)


@cache
def _entry_spec() -> dict[str, Any]:
    """The options of one vllm_service_services entry, from the role's argument spec.

    Required options stay optional here: the plan needs no served_name, and the
    schema check reports a missing one.
    """
    options = schema.specs().get("vllm_service", {}).get(SERVICES_KEY, {}).get("options", {})
    drop = ("description", "version_added", "required")
    return {
        name: {k: v for k, v in spec.items() if k not in drop} for name, spec in options.items()
    }


def parse_services(value: Any) -> list[Service]:
    """The valid entries of vllm_service_services, converted as Ansible converts them
    (the port "8000" is 8000, gpus "0,1" is [0, 1]).

    Invalid entries are left out: the role's argument spec (the schema `aiprov
    validate` checks first) reports them.
    """
    if not isinstance(value, list):
        return []
    validator = ArgumentSpecValidator(_entry_spec())
    services = []
    for index, entry in enumerate(value):
        if not isinstance(entry, dict):
            continue
        result = validator.validate(entry)
        if result.error_messages:
            continue
        params = {k: v for k, v in result.validated_parameters.items() if v is not None}
        if not isinstance(params.get("name"), str) or not isinstance(params.get("model"), str):
            continue  # the schema reports the missing name or model
        fields = {k: v for k, v in params.items() if k in Service.__dataclass_fields__}
        fields["extra_args"] = [str(a) for a in params.get("extra_args", [])]
        services.append(Service(index=index, raw=entry, **fields))
    return services


# ---- formulas (docs/plan.md) ------------------------------------------------


def embedding_params(vocab_size: int, hidden_size: int, tied: bool) -> int:
    """Input embedding plus LM head (one matrix when tied): kept in 16 bits by AWQ/GPTQ."""
    return vocab_size * hidden_size * (1 if tied else 2)


def quantized_bytes_per_param(quant: Quantization) -> float:
    """bits/8 for the weight, plus per group a 16-bit scale and a packed zero point."""
    per = quant.bits / 8
    if quant.group_size:
        per += (2 + quant.bits / 8) / quant.group_size
    return per


def weight_bytes(
    params: float, embed_params: float, dtype_bytes: int, quant: Quantization | None
) -> float:
    """Weights of the whole model in memory."""
    if quant is None:
        return params * dtype_bytes
    return embed_params * dtype_bytes + (params - embed_params) * quantized_bytes_per_param(quant)


def kv_heads_per_gpu(kv_heads: int, tp: int) -> int:
    """KV heads each GPU stores: split when TP divides them, else each GPU keeps one copy."""
    return max(1, kv_heads // tp)


def kv_bytes_per_token(
    layers: int, kv_heads: int, head_dim: int, tp: int, pp: int, elem_bytes: float
) -> float:
    """KV cache per token on one GPU: layers of its stage × KV heads × head dim × (K,V) × bytes."""
    return math.ceil(layers / pp) * kv_heads_per_gpu(kv_heads, tp) * head_dim * 2 * elem_bytes


def served_dtype_bytes(checkpoint_dtype: str, dtype_arg: str | None) -> int:
    """--dtype auto serves 16-bit checkpoints as they are and float32 ones in 16 bits."""
    if dtype_arg and dtype_arg != "auto":
        return DTYPE_BYTES.get({"half": "float16", "float": "float32"}.get(dtype_arg, dtype_arg), 2)
    return min(DTYPE_BYTES.get(checkpoint_dtype, 2), 2)


def stage_layers(layers: int, pp: int) -> list[int]:
    """Layers of each pipeline stage, as vLLM splits them (get_pp_indices
    without VLLM_PP_LAYER_PARTITION): evenly, the remainder going to the
    stages before the last, from the second-to-last backwards."""
    partitions = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        partitions[-i] += 1
    return partitions


def kv_elem_bytes(kv_cache_dtype: str | None, dtype_bytes: int) -> int:
    if kv_cache_dtype and kv_cache_dtype.startswith("fp8"):
        return 1
    return dtype_bytes


# ---- the plan ---------------------------------------------------------------


def arg_value(args: list[str], *flags: str) -> str | None:
    """The value of the last of `flags` in an argument list (`--f v` or `--f=v`)."""
    found = None
    for i, arg in enumerate(args):
        name, eq, value = arg.partition("=")
        if name.replace("_", "-") in flags:
            if eq:
                found = value
            elif i + 1 < len(args) and not args[i + 1].startswith("-"):
                found = args[i + 1]
    return found


@dataclass
class ServicePlan:
    service: Service
    facts: ModelFacts | None
    quantization: str | None  # the method in effect
    dtype_bytes: int = 2
    weights_gib: float | None = None  # the whole model
    weights_per_gpu_gib: float | None = None
    share_gib: float = 0.0
    kv_per_token_bytes: float | None = None
    kv_cache_gib: float | None = None
    kv_needed_gib: float | None = None
    kv_tokens: int | None = None
    max_model_len: int | None = None
    # A multi-node service: this host's place in its group, the pipeline
    # stages it holds and their layers (the model's, when its facts are known).
    node_rank: int | None = None
    nodes: list[str] = field(default_factory=list)
    stages: list[int] = field(default_factory=list)
    layers: tuple[int, int] | None = None


@dataclass
class GpuShare:
    service: str
    share_gib: float
    weights_gib: float | None
    reserve_gib: float
    kv_cache_gib: float | None
    context_gib: float


@dataclass
class GpuPlan:
    index: int
    total_gib: float
    fraction: float = 0.0
    shares: list[GpuShare] = field(default_factory=list)

    @property
    def free_gib(self) -> float:
        return self.total_gib - sum(s.share_gib + s.context_gib for s in self.shares)


@dataclass
class HostPlan:
    host: str
    gpu_family: str | None
    gpu_memory_gib: float | None
    gpu_count: int
    services: list[ServicePlan]
    gpus: list[GpuPlan]
    problems: list[Problem]


def models_dirs(host: Host, extra: Iterable[Path] = ()) -> list[Path]:
    """Where model files may be on this machine: --models-dir, $AIPROV_MODELS_DIR, models_root."""
    dirs = [Path(p) for p in extra]
    dirs += [Path(p) for p in os.environ.get("AIPROV_MODELS_DIR", "").split(os.pathsep) if p]
    root = host.vars.get("models_root")
    if isinstance(root, str) and _is_dir(root):
        dirs.append(Path(root))
    return dirs


def _is_dir(path: str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):  # a name too long for this system: not a directory here
        return False


def catalog_entries(host: Host) -> dict[str, dict[str, Any]]:
    catalog = host.vars.get("models_catalog")
    if not isinstance(catalog, list):
        return {}
    return {e["id"]: e for e in catalog if isinstance(e, dict) and isinstance(e.get("id"), str)}


def facts_for(host: Host, model_id: str, dirs: Iterable[Path]) -> ModelFacts | None:
    """Facts of a service's model: an id of models_catalog or an absolute path."""
    entry = catalog_entries(host).get(model_id, {})
    repo = entry.get("repo") if isinstance(entry.get("repo"), str) else ""
    exact = [Path(model_id)] if model_id.startswith("/") else []
    if isinstance(entry.get("local_dir"), str):
        exact.append(Path(entry["local_dir"]))
    return modelfacts.lookup(model_id, repo, dirs, exact)


def plan_service(service: Service, facts: ModelFacts | None, gpu_gib: float | None) -> ServicePlan:
    args = service.extra_args
    quant_name = service.quantization or arg_value(args, "--quantization", "-q")
    result = ServicePlan(service=service, facts=facts, quantization=quant_name)
    if gpu_gib is not None:
        result.share_gib = service.gpu_memory_utilization * gpu_gib
    if facts is None:
        return result
    if quant_name is None and facts.quantization is not None:
        result.quantization = facts.quantization.method
    result.dtype_bytes = served_dtype_bytes(facts.dtype, arg_value(args, "--dtype"))
    quant = facts.quantization or ONLINE_QUANTIZATION.get(quant_name or "")
    if facts.weight_bytes is not None:
        total = float(facts.weight_bytes)
        if facts.quantization is None:  # a float32 checkpoint is served in 16 bits
            total *= result.dtype_bytes / DTYPE_BYTES.get(facts.dtype, 2)
    elif facts.params is not None:
        embed = embedding_params(facts.vocab_size, facts.hidden_size, facts.tie_word_embeddings)
        total = weight_bytes(facts.params, embed, result.dtype_bytes, quant)
    else:
        total = None
    tp, pp = service.tensor_parallel_size, service.pipeline_parallel_size
    if total is not None and tp > 0 and pp > 0:
        result.weights_gib = total / GIB
        result.weights_per_gpu_gib = result.weights_gib / (tp * pp)
    result.max_model_len = service.max_model_len or facts.max_model_len
    if tp <= 0 or pp <= 0:
        return result
    if facts.encoder_only:
        result.kv_per_token_bytes = 0.0
    else:
        elem = kv_elem_bytes(arg_value(args, "--kv-cache-dtype"), result.dtype_bytes)
        result.kv_per_token_bytes = kv_bytes_per_token(
            facts.layers, facts.kv_heads, facts.head_dim, tp, pp, elem
        )
    result.kv_needed_gib = result.max_model_len * result.kv_per_token_bytes / GIB
    if gpu_gib is not None and result.weights_per_gpu_gib is not None:
        result.kv_cache_gib = result.share_gib - result.weights_per_gpu_gib - RESERVE_GIB
        if result.kv_per_token_bytes:
            result.kv_tokens = max(0, int(result.kv_cache_gib * GIB // result.kv_per_token_bytes))
    return result


def _gib(value: float) -> str:
    return f"{value:.1f} GiB"


def place_stages(sp: ServicePlan, host: str, members: dict[str, list[str]]) -> None:
    """Where a multi-node service's pipeline stages are: node r of N holds
    stages r·P/N to (r+1)·P/N - 1 (tensor parallel within the host)."""
    nodes = vllm_services.nodes(sp.service.raw, members)
    rank = vllm_services.node_rank(sp.service.raw, host, members) if nodes else None
    pp = sp.service.pipeline_parallel_size
    if rank is None or pp < 1 or pp % len(nodes):
        return  # not a node, or a layout validate refuses
    per = pp // len(nodes)
    sp.node_rank, sp.nodes, sp.stages = rank, nodes, list(range(rank * per, (rank + 1) * per))
    if sp.facts is not None and sp.facts.layers >= pp:
        split = stage_layers(sp.facts.layers, pp)
        first = sum(split[: sp.stages[0]])
        sp.layers = (first, first + sum(split[sp.stages[0] : sp.stages[-1] + 1]) - 1)


def plan_host(
    host: Host,
    default_file: str,
    dirs: Iterable[Path] = (),
    members: dict[str, list[str]] | None = None,
) -> HostPlan:
    """The memory plan of one host, with the problems it shows (members: the
    inventory's groups, for a multi-node service named by group)."""
    family = host.vars.get("aiprov_gpu_family")
    gpu_gib = host.vars.get("aiprov_gpu_memory_gib")
    count = host.vars.get("aiprov_gpu_count")
    valid = (is_int(gpu_gib) or isinstance(gpu_gib, float)) and gpu_gib > 0
    gpu_gib = float(gpu_gib) if valid else None
    count = count if is_int(count) and count >= 0 else 0
    services = parse_services(host.vars.get(SERVICES_KEY))
    search = models_dirs(host, dirs)
    plans = [plan_service(s, facts_for(host, s.model, search), gpu_gib) for s in services]
    for sp in plans:
        if sp.service.multinode:
            place_stages(sp, host.name, members or {})
    problems: list[Problem] = []
    if gpu_gib is None and count and services:
        problems.append(
            Problem(
                origin_file(host.vars.get("aiprov_gpu_memory_gib"), default_file),
                "aiprov_gpu_memory_gib",
                f"host {host.name} has no GPU memory size (GiB, above 0): its GPUs' memory "
                "is not planned; put the host in its GPU-family group or set it",
                severity="warning",
            )
        )
        count = 0
    gpus = [GpuPlan(index=i, total_gib=gpu_gib or 0.0) for i in range(count)]
    for sp in plans:
        for index in sp.service.gpus:
            if not 0 <= index < count:
                continue  # reported by the GPU index check
            gpu = gpus[index]
            gpu.fraction += sp.service.gpu_memory_utilization
            kv = None if sp.kv_cache_gib is None else max(sp.kv_cache_gib, 0.0)
            gpu.shares.append(
                GpuShare(
                    service=sp.service.name,
                    share_gib=sp.share_gib,
                    weights_gib=sp.weights_per_gpu_gib,
                    reserve_gib=RESERVE_GIB,
                    kv_cache_gib=kv,
                    context_gib=CONTEXT_GIB,
                )
            )
        problems += _service_problems(sp, default_file)
    # MinerU's vLLM engines (role mineru) take their share of the same GPUs.
    for stack in stacks.mineru_services(host):
        for index in stack.gpus:
            if 0 <= index < count:
                gpus[index].fraction += stack.gpu_memory_utilization
                gpus[index].shares.append(
                    GpuShare(
                        service=stack.label,
                        share_gib=stack.gpu_memory_utilization * (gpu_gib or 0.0),
                        weights_gib=None,
                        reserve_gib=RESERVE_GIB,
                        kv_cache_gib=None,
                        context_gib=CONTEXT_GIB,
                    )
                )
    list_file = origin_file(host.vars.get(SERVICES_KEY), default_file)
    if gpu_gib:
        for gpu in gpus:
            problems += _gpu_problems(gpu, list_file)
    return HostPlan(
        host=host.name,
        gpu_family=family if isinstance(family, str) else None,
        gpu_memory_gib=gpu_gib,
        gpu_count=count,
        services=plans,
        gpus=gpus,
        problems=problems,
    )


def _service_problems(sp: ServicePlan, default_file: str) -> list[Problem]:
    service, facts = sp.service, sp.facts
    problems = []
    util_file = service.file("gpu_memory_utilization", default_file)
    util_key = service.key("gpu_memory_utilization")
    if not 0 < service.gpu_memory_utilization <= 1:
        problems.append(
            Problem(util_file, util_key, "must be a fraction of the GPU's memory in (0, 1]")
        )
        return problems
    if sp.weights_per_gpu_gib is not None and sp.kv_cache_gib is not None:
        if sp.kv_cache_gib < 0:
            need = (sp.weights_per_gpu_gib + RESERVE_GIB) * service.gpu_memory_utilization
            need /= sp.share_gib
            fix = (
                f"raise it above {need:.2f} or spread the model over more GPUs"
                if need <= SAFE_FRACTION
                else "it fits at no fraction: spread the model over more GPUs"
            )
            problems.append(
                Problem(
                    util_file,
                    util_key,
                    f"the weights take {_gib(sp.weights_per_gpu_gib)} per GPU plus "
                    f"{_gib(RESERVE_GIB)} for activations, more than its share "
                    f"({service.gpu_memory_utilization} × GPU = {_gib(sp.share_gib)}); "
                    f"{fix} (tensor_parallel_size)",
                )
            )
        elif sp.kv_needed_gib is not None and sp.kv_cache_gib < sp.kv_needed_gib:
            problems.append(
                Problem(
                    service.file("max_model_len", default_file),
                    service.key("max_model_len"),
                    f"one sequence of {sp.max_model_len} tokens needs "
                    f"{_gib(sp.kv_needed_gib)} of KV cache per GPU, but the share leaves "
                    f"{_gib(sp.kv_cache_gib)} ({sp.kv_tokens} tokens); lower max_model_len "
                    "to that, raise gpu_memory_utilization, or use --kv-cache-dtype fp8",
                )
            )
    if facts is not None and service.max_model_len and service.max_model_len > facts.max_model_len:
        problems.append(
            Problem(
                service.file("max_model_len", default_file),
                service.key("max_model_len"),
                f"{service.max_model_len} is longer than the {facts.max_model_len} tokens "
                f"{facts.name} supports; vLLM refuses to start",
            )
        )
    return problems


def _gpu_problems(gpu: GpuPlan, file: str) -> list[Problem]:
    names = " + ".join(
        f"{s.service} {s.share_gib / gpu.total_gib:.2f}" for s in gpu.shares if gpu.total_gib
    )
    if gpu.fraction > SAFE_FRACTION + 1e-9:
        return [
            Problem(
                file,
                SERVICES_KEY,
                f"GPU {gpu.index}: gpu_memory_utilization adds up to {gpu.fraction:.2f} "
                f"({names}), past the safe bound {SAFE_FRACTION}; lower the fractions or "
                "move a service to another GPU",
            )
        ]
    if gpu.free_gib < 0:
        return [
            Problem(
                file,
                SERVICES_KEY,
                f"GPU {gpu.index}: {len(gpu.shares)} processes need their shares ({names}) plus "
                f"{_gib(CONTEXT_GIB)} each for the CUDA context, "
                f"{_gib(gpu.total_gib - gpu.free_gib)} of {_gib(gpu.total_gib)}; lower the "
                "fractions or move a service to another GPU",
            )
        ]
    return []


def plan(inventory: Inventory, default_file: str, host: str | None = None,
         dirs: Iterable[Path] = ()) -> list[HostPlan]:  # fmt: skip
    hosts = [inventory.host(host)] if host else inventory.hosts
    return [plan_host(h, default_file, dirs, inventory.members()) for h in hosts]


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def to_json(plans: list[HostPlan]) -> dict[str, Any]:
    """The plan as plain data (`aiprov plan --format json`), GiB rounded to 0.01."""
    return {
        "assumptions": {
            "context_gib_per_process": CONTEXT_GIB,
            "reserve_gib_per_process": RESERVE_GIB,
            "safe_fraction": SAFE_FRACTION,
        },
        "hosts": [_host_json(p) for p in plans],
    }


def _multinode_json(sp: ServicePlan) -> dict[str, Any]:
    """A multi-node service's place on this host (nothing for the others)."""
    if sp.node_rank is None:
        return {}
    layers = None if sp.layers is None else list(sp.layers)
    return {
        "multinode": {
            "node_rank": sp.node_rank,
            "nodes": sp.nodes,
            "stages": sp.stages,
            "layers": layers,
        }
    }


def _host_json(p: HostPlan) -> dict[str, Any]:
    return {
        "host": p.host,
        "gpu_family": p.gpu_family,
        "gpu_memory_gib": p.gpu_memory_gib,
        "gpu_count": p.gpu_count,
        "services": [
            {
                "name": sp.service.name,
                "model": sp.service.model,
                "facts": None
                if sp.facts is None
                else ("catalog" if sp.facts.source == "catalog" else "config.json"),
                "gpus": sp.service.gpus,
                "tensor_parallel_size": sp.service.tensor_parallel_size,
                "pipeline_parallel_size": sp.service.pipeline_parallel_size,
                "gpu_memory_utilization": sp.service.gpu_memory_utilization,
                "quantization": sp.quantization,
                "dtype_bytes": sp.dtype_bytes,
                "max_model_len": sp.max_model_len,
                "weights_gib": _round(sp.weights_gib),
                "weights_per_gpu_gib": _round(sp.weights_per_gpu_gib),
                "share_gib": _round(sp.share_gib),
                "kv_bytes_per_token_per_gpu": sp.kv_per_token_bytes,
                "kv_cache_gib": _round(sp.kv_cache_gib),
                "kv_needed_gib": _round(sp.kv_needed_gib),
                "kv_tokens": sp.kv_tokens,
                **_multinode_json(sp),
            }
            for sp in p.services
        ],
        "gpus": [
            {
                "index": g.index,
                "total_gib": g.total_gib,
                "fraction": _round(g.fraction),
                "free_gib": _round(g.free_gib),
                "services": [
                    {
                        "name": s.service,
                        "share_gib": _round(s.share_gib),
                        "weights_gib": _round(s.weights_gib),
                        "reserve_gib": s.reserve_gib,
                        "kv_cache_gib": _round(s.kv_cache_gib),
                        "context_gib": s.context_gib,
                    }
                    for s in g.shares
                ],
            }
            for g in p.gpus
        ],
        "problems": [str(problem) for problem in p.problems],
    }
