"""Semantic checks of vllm_service_services that the argument spec cannot express.

Rules of validate.RULES; each yields `FILE: KEY: message` problems
with a hint to fix. Model facts come from aiprov.modelfacts, memory from
aiprov.plan, vLLM options from aiprov.vllmflags.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from aiprov import locks, paths, plan, vllm_services, vllmflags
from aiprov.inventory import Host, Inventory, origin_file
from aiprov.modelfacts import ModelFacts
from aiprov.plan import SERVICES_KEY, Service
from aiprov.problems import Problem

# vLLM options the role renders from a service's keys; extra_args must not repeat them.
# vLLM option -> the service key that sets it (aiprov.vllm_services' table).
FLAG_KEYS = {option: key for key, option in vllm_services.OPTION_OF_KEY.items()}
# Options the role sets itself (or must never see), and why extra_args must not.
RESERVED_FLAGS = {
    "--api-key": "a secret on the command line shows in `ps`; set vllm_service_api_key (vault)",
    "--device": "the role picks the device from `gpus` (CUDA_VISIBLE_DEVICES)",
}
# Ports of the other stacks on a host, besides the *_port variables of the
# other roles: Dify's nginx moved to 10080/10443 as in the L20 guide.
FIXED_PORTS = {22: "SSH", 10080: "Dify's nginx (HTTP)", 10443: "Dify's nginx (HTTPS)"}
QUANT_FAMILIES = {
    "awq": {"awq", "awq_marlin"},
    "gptq": {"gptq", "gptq_marlin", "gptq_marlin_24", "gptq_bitblas"},
    "fp8": {"fp8", "fbgemm_fp8", "modelopt"},
}
# fullmatch, not match with "$": "$" also matches before a final newline ("llm\n").
SERVICE_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
# Methods vLLM applies to an unquantized checkpoint while loading it.
ONLINE_METHODS = {"fp8", "bitsandbytes", "experts_int8", "torchao"}


def _family(method: str) -> str:
    for family, members in QUANT_FAMILIES.items():
        if method in members:
            return family
    return method


def _default_file(inventory: Inventory) -> str:
    return inventory.sources[-1]


def _hosts_with_services(inventory: Inventory) -> Iterator[tuple[Host, list[Service], str]]:
    default = _default_file(inventory)
    for host in inventory.hosts:
        services = plan.parse_services(host.vars.get(SERVICES_KEY))
        if services:
            yield host, services, default


def _version(host: Host) -> str | None:
    version = host.vars.get(
        "vllm_service_version", paths.role_defaults("vllm_service").get("vllm_service_version")
    )
    return str(version) if version is not None else None


def check_models(inventory: Inventory) -> Iterator[Problem]:
    """Each service names a models_catalog id whose architecture aiprov knows."""
    for host, services, default in _hosts_with_services(inventory):
        catalog = plan.catalog_entries(host)
        dirs = plan.models_dirs(host)
        for service in services:
            file, key = service.file("model", default), service.key("model")
            if service.model not in catalog and not service.model.startswith("/"):
                known = ", ".join(sorted(catalog)) or "none"
                yield Problem(
                    file,
                    key,
                    f"no models_catalog entry has id '{service.model}' (ids: {known}), and it "
                    "is not an absolute path",
                )
            elif plan.facts_for(host, service.model, dirs) is None:
                yield Problem(
                    file,
                    key,
                    f"no architecture facts for '{service.model}': head, quantization and "
                    "memory checks skipped; point --models-dir or AIPROV_MODELS_DIR at its "
                    "files or add it to aiprov's data/models.yml",
                    severity="warning",
                )


def _parallel_problems(
    service: Service, facts: ModelFacts | None, default: str, cpu: bool, nodes: int = 1
):
    """nodes: the hosts a multi-node service spreads over; gpus are each one's."""
    tp, pp = service.tensor_parallel_size, service.pipeline_parallel_size
    tp_file, tp_key = (
        service.file("tensor_parallel_size", default),
        service.key("tensor_parallel_size"),
    )
    if tp < 1 or pp < 1:
        yield Problem(
            tp_file, tp_key, "tensor_parallel_size and pipeline_parallel_size must be ≥ 1"
        )
        return
    if not service.gpus and not cpu:
        yield Problem(
            service.file("gpus", default),
            service.key("gpus"),
            f"give the service its {tp * pp} GPU(s); without gpus it sees every GPU of the "
            "host and shares GPU 0 with the other services",
        )
    elif service.gpus and tp * pp * max(service.replicas, 1) != len(service.gpus) * nodes:
        count = f"{tp} × {pp} = {tp * pp}"
        if service.replicas > 1:
            count = f"{count}, for each of {service.replicas} replicas"
        if nodes > 1:
            count = f"{count} over {nodes} hosts, {tp * pp / nodes:g} on each"
        yield Problem(
            service.file("gpus", default),
            service.key("gpus"),
            f"{len(service.gpus)} GPU(s) given, but tensor_parallel_size × "
            f"pipeline_parallel_size = {count}; vLLM uses exactly that many",
        )
    if facts is None:
        return
    if facts.attention_heads % tp:
        valid = [n for n in range(1, facts.attention_heads + 1) if facts.attention_heads % n == 0]
        yield Problem(
            tp_file,
            tp_key,
            f"{tp} does not divide the {facts.attention_heads} attention heads of "
            f"{facts.name}; use one of {', '.join(map(str, valid[:8]))}",
        )
    elif facts.kv_heads % tp and tp % facts.kv_heads:
        yield Problem(
            tp_file,
            tp_key,
            f"{tp} and the {facts.kv_heads} KV heads of {facts.name} must divide one "
            "another (vLLM splits KV heads across GPUs or copies them)",
        )
    if pp > facts.layers:
        yield Problem(
            service.file("pipeline_parallel_size", default),
            service.key("pipeline_parallel_size"),
            f"{pp} pipeline stages for {facts.layers} layers",
        )


def check_parallelism(inventory: Inventory) -> Iterator[Problem]:
    """TP divides the heads (and the KV-head rule), PP × TP = GPUs, GPU indexes exist."""
    for host, services, default in _hosts_with_services(inventory):
        dirs = plan.models_dirs(host)
        family = host.vars.get("aiprov_gpu_family")
        count = host.vars.get("aiprov_gpu_count")
        for service in services:
            facts = plan.facts_for(host, service.model, dirs)
            nodes = len(vllm_services.nodes(service.raw, inventory.members())) or 1
            yield from _parallel_problems(service, facts, default, family == "cpu", nodes)
            gpus_file, gpus_key = service.file("gpus", default), service.key("gpus")
            if len(set(service.gpus)) != len(service.gpus):
                yield Problem(gpus_file, gpus_key, f"{service.gpus} lists a GPU twice")
            if family == "cpu":
                continue
            if not isinstance(count, int):
                yield Problem(
                    gpus_file,
                    gpus_key,
                    f"host {host.name} has no aiprov_gpu_count: put it in its GPU-family "
                    "group (l20, a10, a100, ...) so the GPU indexes can be checked",
                    severity="warning",
                )
                continue
            missing = [g for g in service.gpus if not 0 <= g < count]
            if missing:
                yield Problem(
                    gpus_file,
                    gpus_key,
                    f"GPU {', '.join(map(str, missing))} does not exist: host {host.name} "
                    f"({family}) has {count} GPUs, numbered 0-{count - 1}",
                )


def check_memory(inventory: Inventory) -> Iterator[Problem]:
    """Fractions on a GPU stay under the safe bound, weights and one sequence fit each share."""
    default = _default_file(inventory)
    for host in inventory.hosts:  # MinerU's shares count too, with or without vLLM services
        if host.vars.get("aiprov_gpu_family") == "cpu":
            continue
        yield from plan.plan_host(host, default).problems


def other_ports(host: Host) -> dict[int, str]:
    """Ports the other enabled roles on this host listen on (their *_port variables), and
    Dify's as the L20 guide moves them."""
    taken = dict(FIXED_PORTS)
    for role_dir in sorted(paths.roles_dir().iterdir()):
        role = role_dir.name
        defaults = paths.role_defaults(role)
        if (
            role == "vllm_service"
            or host.vars.get(f"{role}_enabled", defaults.get(f"{role}_enabled")) is False
            or (role == "bundle_host" and locks.BUNDLE_HOST_GROUP not in host.groups)
        ):
            continue  # a role turned off on this host (or not run on it) listens on nothing
        for name, value in defaults.items():
            if not name.endswith("_port"):
                continue
            # funasr_service_proxy_port is free while funasr_service_proxy_enabled is false.
            switch = name.removesuffix("_port") + "_enabled"
            if host.vars.get(switch, defaults.get(switch)) is False:
                continue
            value = host.vars.get(name, value)
            if isinstance(value, int) and not isinstance(value, bool):
                taken[value] = name
    return taken


def check_service_names(inventory: Inventory) -> Iterator[Problem]:
    """Names become unit names (aiprov-vllm-<name>.service): unique, [a-z0-9-], ≤ 64."""
    for _host, services, default in _hosts_with_services(inventory):
        names: set[str] = set()
        for service in services:
            file, key = service.file("name", default), service.key("name")
            if not SERVICE_NAME.fullmatch(service.name):
                yield Problem(
                    file,
                    key,
                    f"{service.name!r} must be lowercase letters, digits and '-' (at most 64), "
                    "starting with a letter or digit: it becomes the unit "
                    "aiprov-vllm-<name>.service",
                )
            if service.name in names:
                yield Problem(
                    file,
                    key,
                    "two services have this name; names become unit names and must differ",
                )
            names.add(service.name)


def check_ports(inventory: Inventory) -> Iterator[Problem]:
    """Ports unique per host, unprivileged, and clear of the other stacks."""
    for host, services, default in _hosts_with_services(inventory):
        taken = other_ports(host)
        seen: dict[int, str] = {}
        for service in services:
            port = service.port
            if port is None:
                continue
            file, key = service.file("port", default), service.key("port")
            if not 1024 <= port <= 65535:
                yield Problem(
                    file,
                    key,
                    f"{port} is not between 1024 and 65535 (the service runs unprivileged)",
                )
            elif port in seen:
                yield Problem(file, key, f"{port} is already the port of service '{seen[port]}'")
            elif port in taken:
                yield Problem(
                    file, key, f"{port} is taken by {taken[port]} on this host; pick a free port"
                )
            seen.setdefault(port, service.name)


def _quantization_problems(service: Service, facts: ModelFacts | None, flags, default: str):
    method = service.quantization or plan.arg_value(service.extra_args, "--quantization", "-q")
    if method is None:
        return
    file = service.file("quantization" if service.quantization else "extra_args", default)
    key = service.key("quantization" if service.quantization else "extra_args")
    if (
        flags is not None
        and flags.quantization_methods
        and method not in flags.quantization_methods
    ):
        yield Problem(
            file,
            key,
            f"vLLM {flags.version} has no quantization method '{method}'",
        )
        return
    if facts is None:
        return
    if facts.quantization is None:
        if method not in ONLINE_METHODS:
            yield Problem(
                file,
                key,
                f"'{method}' needs a checkpoint quantized with {_family(method)}, but "
                f"{facts.name} is unquantized ({facts.dtype}); download a {_family(method).upper()}"
                " build of the model (e.g. its -AWQ repository) or drop the quantization",
            )
    elif _family(method) != _family(facts.quantization.method):
        yield Problem(
            file,
            key,
            f"'{method}' does not match the checkpoint of {facts.name}, which is "
            f"quantized with {facts.quantization.method}; leave quantization unset so vLLM "
            "reads it from the model",
        )


def check_quantization(inventory: Inventory) -> Iterator[Problem]:
    """The quantization method matches the model's checkpoint."""
    for host, services, default in _hosts_with_services(inventory):
        dirs = plan.models_dirs(host)
        version = _version(host)
        flags = vllmflags.load(version) if version else None
        for service in services:
            facts = plan.facts_for(host, service.model, dirs)
            yield from _quantization_problems(service, facts, flags, default)


def check_vllm_args(inventory: Inventory) -> Iterator[Problem]:
    """Every vLLM option exists in the pinned version, spelled exactly."""
    for host, services, default in _hosts_with_services(inventory):
        version = _version(host)
        flags = vllmflags.load(version) if version else None
        version_file = origin_file(host.vars.get("vllm_service_version"), default)
        if flags is None:
            yield Problem(
                version_file,
                "vllm_service_version",
                f"aiprov has no option data for vLLM {version} (it has "
                f"{', '.join(vllmflags.versions())}); vLLM options are not checked. "
                "Make it with scripts/gen_vllm_flags.py",
                severity="warning",
            )
            continue
        for service in services:
            yield from _generated_problems(service, flags, default)
            yield from _extra_args_problems(service, flags, default)


def _extra_args_problems(service: Service, flags, default: str) -> Iterator[Problem]:
    file, key = service.file("extra_args", default), service.key("extra_args")
    parsed, problems = vllmflags.parse(flags, service.extra_args)
    for problem in problems:
        yield Problem(file, key, problem.message, severity=problem.severity)
    for arg in parsed:
        if arg.flag in FLAG_KEYS:
            yield Problem(
                file,
                key,
                f"{arg.flag} is set from the service's `{FLAG_KEYS[arg.flag]}` key; "
                "set it there instead",
            )
        elif arg.flag in RESERVED_FLAGS:
            yield Problem(file, key, f"{arg.flag}: {RESERVED_FLAGS[arg.flag]}")


def _generated_problems(service: Service, flags, default: str) -> list[Problem]:
    """The options the role renders from the service's keys, checked like extra_args."""
    if not isinstance(service.raw.get("served_name"), str):
        return []  # the schema reports a missing served_name
    argv = vllm_services.service_argv({**service.raw, "extra_args": []}, model_path="/model")
    parsed, arg_problems = vllmflags.parse(flags, argv)
    problems = []
    for problem in arg_problems:
        key = FLAG_KEYS.get(problem.flag, "name")
        message = problem.message
        if problem.flag in vllmflags.renamed() or message.startswith("vLLM"):
            message += "; drop this key or pin a vLLM version that has it"
        problems.append(
            Problem(service.file(key, default), service.key(key), message, problem.severity)
        )
    registries = {
        "--tool-call-parser": flags.extra.get("tool_call_parsers"),
        "--reasoning-parser": flags.extra.get("reasoning_parsers"),
    }
    for arg in parsed:
        names = registries.get(arg.flag)
        if names and arg.values and arg.values[0] not in names:
            key = FLAG_KEYS[arg.flag]
            problems.append(
                Problem(
                    service.file(key, default),
                    service.key(key),
                    f"'{arg.values[0]}' is not a {arg.flag} of vLLM {flags.version} "
                    f"(one of {', '.join(names)})",
                )
            )
    if service.enable_auto_tool_choice and not service.tool_call_parser:
        problems.append(
            Problem(
                service.file("enable_auto_tool_choice", default),
                service.key("enable_auto_tool_choice"),
                "needs tool_call_parser (vLLM refuses --enable-auto-tool-choice without it)",
            )
        )
    return problems
