"""Rules about the values themselves, for every role: what the argument specs let through.

Ansible's argument specs check types, not values: a port of 70000, a timeout
of -5, "no" where a boolean belongs (coerced, then refused by ansible-core 2.19
in some conditionals), a newline in a served name (it ends up in a unit file),
a NaN GPU size (it crashes the planner), a URL with a password in it. Each rule
here is a pure function of the loaded inventory yielding `FILE: KEY: message`
problems; a value that is a Jinja template is left to the run (only it can
render it), except where a rule says otherwise.

Rules kept elsewhere, not repeated here: vLLM service ports against each other
and the other roles (vllm_checks.check_ports), MinerU ports against vLLM's
(checks_stacks), the mirror URLs of python_env and docker (checks_mirrors,
whose url_problem the other roles' URLs share), unit-name charset of vLLM
services (vllm_checks.check_service_names), and API keys a service needs
(checks_secrets).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from aiprov import checks_mirrors, gpu_families, locks, paths, schema, yaml_guard
from aiprov.inventory import Host, Inventory, is_int, origin_file
from aiprov.problems import Problem

try:  # ansible-core >= 2.19: an inline !vault value keeps this tag once decrypted
    from ansible._internal._datatag._tags import VaultedValue
except ImportError:  # pragma: no cover - older ansible-core
    VaultedValue = None

# A walk over one variable stops after this many values (yaml_guard refuses alias
# bombs before loading; this bounds anything that got past it).
_WALK_LIMIT = 200_000


# ---- walking the aiprov variables -----------------------------------------------


def is_template(value: Any) -> bool:
    return isinstance(value, str) and ("{{" in value or "{%" in value)


@cache
def _prefixes() -> tuple[str, ...]:
    return tuple(sorted(schema.specs(), key=len, reverse=True))


def spec_of(key: str) -> dict[str, Any] | None:
    """The argument spec of an aiprov variable (a role's or the fleet's), or None."""
    for prefix in _prefixes():
        if key.startswith(prefix + "_"):
            return schema.specs()[prefix].get(key)
    return None


def _element_spec(spec: dict[str, Any] | None) -> dict[str, Any] | None:
    if not spec or spec.get("type") != "list":
        return None
    if spec.get("options"):
        return {"type": "dict", "options": spec["options"]}
    return {"type": spec.get("elements", "raw")}


def _escaped(text: str) -> str:
    return text.encode("unicode_escape").decode("ascii")


def walk(key: str, value: Any, spec: dict[str, Any] | None) -> Iterator[tuple[str, Any, Any]]:
    """(path, value, spec) of `value` and everything inside it, depth first; paths as
    `vllm_service_services[0].served_name`. Iterative: deep nesting cannot overflow."""
    stack: list[tuple[str, Any, Any]] = [(key, value, spec)]
    seen = 0
    while stack and seen < _WALK_LIMIT:
        path, item, item_spec = stack.pop()
        seen += 1
        yield path, item, item_spec
        if isinstance(item, dict):
            options = (item_spec or {}).get("options") or {}
            for name, sub in reversed(list(item.items())):
                shown = _escaped(name) if isinstance(name, str) else repr(name)
                stack.append((f"{path}.{shown}", sub, options.get(name)))
        elif isinstance(item, list):
            element = _element_spec(item_spec)
            for index in reversed(range(len(item))):
                stack.append((f"{path}[{index}]", item[index], element))


def _aiprov_vars(host: Host) -> Iterator[tuple[str, Any, dict[str, Any] | None]]:
    for key, value in host.vars.items():
        if any(key.startswith(prefix + "_") for prefix in _prefixes()):
            yield key, value, spec_of(key)


def _file(value: Any, *fallbacks: Any, default: str) -> str:
    """Where `value` was set; a bool or None carries no origin, so its container's."""
    for candidate in (value, *fallbacks):
        found = origin_file(candidate, "")
        if found:
            return found
    return default


def _leaves(inventory: Inventory) -> Iterator[tuple[str, str, Any, Any]]:
    """(file, path, value, spec) of every value inside every aiprov variable of every host."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        for key, value, spec in _aiprov_vars(host):
            if is_template(value):
                continue
            top = origin_file(value, default)
            for path, item, item_spec in walk(key, value, spec):
                yield _file(item, default=top), path, item, item_spec


# ---- control characters, NaN and infinity, strings for booleans, minimums ------

# C0 (NUL, tab, newline, CR, ESC, ...), DEL, C1 (NEL ...) and the Unicode line and
# paragraph separators: each splits or corrupts a line of a unit or config file.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def control_problem(text: str) -> str | None:
    found = _CONTROL.search(text)
    if not found:
        return None
    char = found.group()
    return (
        f"contains the control character {_escaped(char)} (U+{ord(char):04X}) at position "
        f"{found.start()}: values reach unit and config files on the host, where it "
        "breaks the line; remove it"
    )


def check_control_characters(inventory: Inventory) -> Iterator[Problem]:
    """No control character in any string (or mapping key) of an aiprov variable."""
    for file, path, value, _spec in _leaves(inventory):
        if isinstance(value, dict):
            for name in value:
                message = control_problem(name) if isinstance(name, str) else None
                if message:
                    yield Problem(file, path, f"a key {message}")
        elif isinstance(value, str) and not is_template(value):
            message = control_problem(value)
            if message:
                yield Problem(file, path, message)


_NON_FINITE = {"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity", "-infinity"}


def check_non_finite(inventory: Inventory) -> Iterator[Problem]:
    """No NaN or ±infinity in any number (nor a string the spec would turn into one)."""
    for file, path, value, spec in _leaves(inventory):
        numeric = (spec or {}).get("type") in ("float", "int")
        if isinstance(value, float) and not math.isfinite(value):
            shown = "NaN" if math.isnan(value) else f"{'-' if value < 0 else ''}infinity"
        elif numeric and isinstance(value, str) and value.strip().lower() in _NON_FINITE:
            shown = f"'{value}' (NaN or infinity once converted)"
        else:
            continue
        yield Problem(file, path, f"{shown} is not a number aiprov or the roles can use")


_TRUE = {"yes", "on", "true", "y", "t", "1"}
_FALSE = {"no", "off", "false", "n", "f", "0"}


def check_bool_strings(inventory: Inventory) -> Iterator[Problem]:
    """A variable whose spec type is bool holds a YAML boolean, not "no" or "true"."""
    for file, path, value, spec in _leaves(inventory):
        if (spec or {}).get("type") != "bool" or not isinstance(value, str):
            continue
        word = value.strip().lower()
        if word not in _TRUE | _FALSE:
            continue  # not a boolean at all: the schema reports it
        meant = "true" if word in _TRUE else "false"
        yield Problem(
            file,
            path,
            f"'{value}' is a string, not a boolean: Ansible's spec check converts it, but "
            f"ansible-core 2.19 refuses a string in the role's conditionals; write {meant} "
            "without quotes",
        )


# The least value of integer variables, by name (the last part of the key) or by
# the ending of the name. Ports are the port rule's; GPU indexes, tensor and
# pipeline sizes and MinerU replicas are checked with the GPUs they use.
MINIMUM = {
    "max_model_len": 1,
    "base_limits_nofile": 1,
    "vllm_service_limit_nofile": 1,
    "docker_log_max_file": 1,
    "context_size": 1,
    "max_tokens": 1,
    "max_chunks": 1,
    "aiprov_gpu_count": 0,
    "memory_mib": 1,  # aiprov_gpu_models[].memory_mib
    "models_disk_reserve_mib": 0,
    "models_cache_bwlimit_kib": 0,
    "limit_nofile": 0,  # a unit's own LimitNOFILE=; 0 keeps systemd's
    "gateway_read_timeout": 1,
    "gateway_tls_self_signed_days": 1,
    # 0 would put an engine on its front's port.
    "vllm_service_engine_port_offset": 1,
    # restarts in 15 minutes that make a loop: 0 would alert on every unit
    "monitoring_restart_count": 1,
}
MINIMUM_BY_ENDING = {
    "_timeout": 0,
    "_retries": 0,
    "_sec": 0,
    "_seconds": 0,
    "_delay": 0,
    "_steps": 0,
    "_interval": 1,
}


def minimum_of(name: str) -> int | None:
    if name in MINIMUM:
        return MINIMUM[name]
    return next((low for end, low in MINIMUM_BY_ENDING.items() if name.endswith(end)), None)


def _as_int(value: Any) -> int | None:
    if is_int(value):
        return value
    if isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+\s*", value):
        return int(value)  # the spec converts "-5" to -5
    return None


def check_minimums(inventory: Inventory) -> Iterator[Problem]:
    """Counts, timeouts and lengths are not negative (max_model_len and the like ≥ 1)."""
    for file, path, value, spec in _leaves(inventory):
        if (spec or {}).get("type") != "int":
            continue
        low = minimum_of(re.split(r"[.\]]", path)[-1])
        number = _as_int(value)
        if low is None or number is None or number >= low:
            continue
        what = "a positive number" if low == 1 else "0 or more"
        yield Problem(file, path, f"{number} is below {low}: it must be {what}")


# ---- ports of every role -----------------------------------------------------------


# A role listens on its *_port variables only where it runs, and a switch
# (<name>_enabled, as funasr_service_proxy_enabled) turns a listener off.
def _role_active(role: str, host: Host, defaults: dict[str, Any]) -> bool:
    values = {**defaults, **host.vars}
    if role == "funasr_service":
        return bool(values.get("funasr_service_model"))
    if role == "models":  # the fleet cache's rsync daemon runs on the cache host only
        return values.get("models_cache_host") == host.name
    if role == "dify":
        return values.get("dify_enabled") is True
    if role == "mineru":
        return bool(values.get("mineru_services"))
    if role == "bundle_host":
        return locks.BUNDLE_HOST_GROUP in host.groups
    return values.get(f"{role}_enabled", True) is not False


def _role_ports(host: Host) -> Iterator[tuple[str, Any, bool]]:
    """(variable, value, in use) of every *_port variable of every role on this host."""
    from aiprov.paths import role_defaults

    for role_dir in sorted(paths.roles_dir().iterdir()):
        role = role_dir.name
        defaults = role_defaults(role)
        names = {k for k in (*defaults, *host.vars) if k.startswith(role + "_")}
        active = _role_active(role, host, defaults)
        for name in sorted(n for n in names if n.endswith("_port")):
            switch = name.removesuffix("_port") + "_enabled"
            on = active and host.vars.get(switch, defaults.get(switch, True)) is not False
            yield name, host.vars.get(name, defaults.get(name)), on


def check_ports(inventory: Inventory) -> Iterator[Problem]:
    """Every role's ports are 1-65535 and distinct on a host (vLLM's: vllm_checks)."""
    from aiprov import stacks

    default = inventory.sources[-1]
    for host in inventory.hosts:
        taken = {22: "SSH"}
        for name, value, on in _role_ports(host):
            port = _as_int(value)
            if port is None or is_template(value):
                continue  # the schema reports a port that is not a number
            file = origin_file(value, default)
            if not 1 <= port <= 65535:
                yield Problem(file, name, f"{port} is not a port (1-65535)")
            elif on and port in taken:
                yield Problem(
                    file, name, f"{port} is already the port of {taken[port]} on this host"
                )
            elif on:
                taken[port] = name
        # MinerU's ports against each other and vLLM's: checks_stacks.
        for service in stacks.mineru_services(host):
            if service.port is None:
                continue
            file, key = service.file("port", default), service.key("port")
            if not 1 <= service.port <= 65535:
                yield Problem(file, key, f"{service.port} is not a port (1-65535)")
            elif service.port in taken:
                yield Problem(
                    file,
                    key,
                    f"{service.port} is already the port of {taken[service.port]} on this host",
                )


# ---- URLs -----------------------------------------------------------------------------

# URL variables of the roles that checks_mirrors does not cover; `[]` marks a
# list of URLs, `[].x` an option of each entry of a list.
URL_KEYS = (
    "cuda_toolkit_runfile_url",
    "dify_source_url",
    "dify_console_url",
    "dify_models[].endpoint_url",
    "funasr_service_pip_index_url",
    "locked_venv_index_url",
    "mineru_build_pip_index_url",
    "monitoring_alertmanager_webhook_url",
    "monitoring_grafana_url",
    "monitoring_grafana_datasource_url",
    "models_hf_endpoint",
    "models_modelscope_endpoint",
    "models_pip_index_url",
    "nvidia_driver_cuda_repo_url",
    "nvidia_driver_runfile_url",
    "vllm_service_pip_index_url",
    "service_unit_units[].health_url",
)


def mirror_url_keys() -> set[str]:
    """The URL variables checks_mirrors checks for scheme, host and whitespace."""
    names = ("_URL_KEYS", "_REQUIRED_URL_KEYS", "_URL_LIST_KEYS")
    found = {k for n in names for k in getattr(checks_mirrors, n, ())}
    return {k + "[]" if k in getattr(checks_mirrors, "_URL_LIST_KEYS", ()) else k for k in found}


def _urls(host: Host, pattern: str) -> Iterator[tuple[str, Any, Any]]:
    """(path, url, container) for a URL_KEYS pattern on this host."""
    key, _, rest = pattern.partition("[]")
    value = host.vars.get(key)
    if not rest and not pattern.endswith("[]"):
        if value is not None:
            yield key, value, None
        return
    if not isinstance(value, list):
        return
    option = rest.lstrip(".")
    for index, entry in enumerate(value):
        if not option:
            yield f"{key}[{index}]", entry, value
        elif isinstance(entry, dict) and option in entry:
            yield f"{key}[{index}].{option}", entry[option], entry


def credentials_problem(url: str) -> str | None:
    try:
        netloc = urlsplit(url).netloc
    except ValueError:
        return None
    if "@" not in netloc:
        return None
    return (
        f"'{checks_mirrors.masked_url(url)}' carries credentials (user:password@): they would "
        "be written into config files on every host and show in logs; keep them in Ansible Vault "
        "(a vaulted variable the role reads) or the environment, not in the URL"
    )


def check_urls(inventory: Inventory) -> Iterator[Problem]:
    """Every role's URLs: http(s) with a host (checks_mirrors.url_problem for the
    variables checks_mirrors does not check itself) and never user:password@."""
    default = inventory.sources[-1]
    own = set(URL_KEYS)
    for host in inventory.hosts:
        for pattern in sorted(own | mirror_url_keys()):
            for path, url, container in _urls(host, pattern):
                if not isinstance(url, str) or not url or is_template(url):
                    continue
                file = _file(url, container, host.vars.get(path.split("[")[0]), default=default)
                message = credentials_problem(url)
                if message is None and pattern in own:
                    message = checks_mirrors.url_problem(url)
                if message:
                    yield Problem(file, path, message)


# ---- models: repo ids, catalog ids, directories -------------------------------------

_REPO = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*")
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
# Directories a models root must not be (nor be under, for the volatile ones).
_SYSTEM_DIRS = {"/", "/bin", "/boot", "/dev", "/etc", "/home", "/lib", "/lib32", "/lib64",
                "/media", "/mnt", "/opt", "/proc", "/root", "/run", "/sbin", "/srv", "/sys",
                "/tmp", "/usr", "/usr/bin", "/usr/lib", "/usr/local", "/usr/sbin", "/var",
                "/var/lib", "/var/log", "/var/tmp", "/var/cache"}  # fmt: skip
_VOLATILE = ("/tmp/", "/var/tmp/", "/dev/", "/proc/", "/sys/", "/run/", "/boot/")
_PATH_KEYS = ("models_root", "vllm_service_models_root", "funasr_service_models_root")


def repo_problem(repo: str) -> str | None:
    if _REPO.fullmatch(repo):
        return None
    if "://" in repo or repo.startswith(("www.", "hf.co/", "huggingface.co/", "modelscope.cn/")):
        return f"'{repo}' is a URL: give the hub's repository id ORG/NAME (e.g. Qwen/Qwen3-8B)"
    if repo.startswith(("/", ".", "~")):
        return (
            f"'{repo}' is a path: give the hub's repository id ORG/NAME; a model already "
            "on disk goes in local_dir"
        )
    if repo.startswith("-"):
        return f"'{repo}' starts with '-': the hub client would take it for an option"
    return f"'{repo}' is not a repository id ORG/NAME (letters, digits, '.', '_', '-')"


def id_problem(model_id: str) -> str | None:
    if _ID.fullmatch(model_id) and model_id not in (".", ".."):
        return None
    return (
        f"'{_escaped(model_id)}' is not a usable id: it names a directory under models_root, "
        "so letters, digits, '.', '_' and '-' only, starting with a letter or digit"
    )


def directory_problem(path: str) -> str | None:
    """Why `path` must not hold the models (the role creates, fills and prunes it)."""
    if not path.startswith("/"):
        return f"'{path}' is not an absolute path"
    parts = path.split("/")
    if ".." in parts or "." in parts:
        return f"'{path}' has '.' or '..' in it: give the directory itself"
    normal = "/" + "/".join(p for p in parts if p)
    if normal in _SYSTEM_DIRS:
        return f"'{path}' is a system directory: give a directory of its own, like /data/models"
    if (normal + "/").startswith(_VOLATILE):
        top = "/" + normal.split("/")[1]
        return (
            f"'{path}' is under {top}, which is cleared or not on disk: give a directory "
            "on a data disk, like /data/models"
        )
    return None


def _local_dir_problem(path: str) -> str | None:
    # A relative local_dir is models_checks.check_models_catalog's to report.
    return directory_problem(path) if path.startswith("/") else None


def check_models_values(inventory: Inventory) -> Iterator[Problem]:
    """Catalog repo ids are ORG/NAME; ids and the models directories are safe paths."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        for key in _PATH_KEYS:
            value = host.vars.get(key)
            if isinstance(value, str) and not is_template(value):
                message = directory_problem(value)
                if message:
                    yield Problem(origin_file(value, default), key, message)
        catalog = host.vars.get("models_catalog")
        if not isinstance(catalog, list):
            continue
        top = origin_file(catalog, default)
        for index, entry in enumerate(catalog):
            if not isinstance(entry, dict):
                continue
            checks = (("id", id_problem), ("repo", repo_problem), ("local_dir", _local_dir_problem))
            for option, rule in checks:
                value = entry.get(option)
                if not isinstance(value, str) or is_template(value):
                    continue
                message = rule(value)
                if message:
                    file = _file(value, entry, default=top)
                    yield Problem(file, f"models_catalog[{index}].{option}", message)


# ---- hosts, groups and FunASR's binding ------------------------------------------------


def hosts_file(inventory: Inventory, host: str) -> str:
    """The user's inventory file that names `host` (the source itself if it is a file)."""
    source = Path(inventory.sources[-1])
    if source.is_file():
        return str(source)
    word = re.compile(rf"(?m)(^|[\s\[,]){re.escape(host)}(\s|:|$|,|\])")
    for candidate in sorted(source.iterdir()) if source.is_dir() else ():
        ignored = candidate.name.startswith(".") or candidate.name.endswith(yaml_guard.IGNORED)
        if candidate.is_file() and not ignored:
            try:
                if word.search(candidate.read_text(errors="replace")):
                    return str(candidate)
            except OSError:
                continue
    return str(source)


def check_gpu_family_groups(inventory: Inventory) -> Iterator[Problem]:
    """A host is in one GPU-family group at most: each brings its own GPU facts."""
    families = set(gpu_families.names())
    for host in inventory.hosts:
        found = sorted(families.intersection(host.groups))
        if len(found) > 1:
            yield Problem(
                hosts_file(inventory, host.name),
                host.name,
                f"is in the GPU-family groups {' and '.join(found)}: their group_vars "
                "(GPU model, memory, count) contradict each other and Ansible silently "
                "keeps one; put the host in the one group that matches its GPUs",
            )


_LOOPBACK = re.compile(r"(127\.\d+\.\d+\.\d+|::1|localhost|\[::1\])")


def check_funasr_binding(inventory: Inventory) -> Iterator[Problem]:
    """With its key-checking proxy on, FunASR listens on the loopback only."""
    from ansible.module_utils.parsing.convert_bool import boolean

    default = inventory.sources[-1]
    for host in inventory.hosts:
        values = host.vars
        listen = values.get("funasr_service_host", "127.0.0.1")
        proxy = values.get("funasr_service_proxy_enabled", False)
        if not values.get("funasr_service_model") or not isinstance(listen, str):
            continue
        if is_template(listen) or _LOOPBACK.fullmatch(listen.strip()):
            continue
        try:
            if not boolean(proxy, strict=True):
                continue
        except TypeError:
            continue  # the schema reports a proxy switch that is not a boolean
        yield Problem(
            origin_file(listen, default),
            "funasr_service_host",
            f"'{listen}' lets clients reach FunASR directly, around the proxy that checks "
            "funasr_service_api_key (funasr_service_proxy_enabled is true); bind it to "
            "127.0.0.1: the gateway role's front serves it on gateway_listen",
        )


# ---- plaintext secrets ------------------------------------------------------------------

SECRET_KEYS = (
    "vllm_service_api_key",
    "funasr_service_api_key",
    "dify_vllm_api_key",
    "models_hf_token",
    "models_modelscope_token",
    "monitoring_grafana_token",
)
# Mappings whose every value is a secret, and mappings of environment variables
# (a secret by its name); `[].x` is an option of each entry of a list.
SECRET_MAPPINGS = ("dify_secrets", "dify_models[].credentials")
ENVIRONMENT_MAPPINGS = (
    "vllm_service_environment",
    "vllm_service_services[].environment",
    "funasr_service_environment",
    "dify_env",
    "mineru_env",
    "dify_models[].credentials",
)
_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASS", "CREDENTIALS"}
_NOT_SECRET = {"FILE", "PATH", "DIR", "URL", "ENDPOINT", "ID", "NAME", "TYPE", "SIZE"}


def looks_secret(name: str) -> bool:
    """HF_TOKEN, OPENAI_API_KEY, DB_PASSWORD; not TOKENIZERS_PARALLELISM or KEY_FILE."""
    words = re.split(r"[_\W]+", name.upper())
    return bool(_SECRET_WORDS.intersection(words)) and words[-1] not in _NOT_SECRET


@cache
def _encrypted_file(path: str) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(14) == b"$ANSIBLE_VAULT"
    except OSError:
        return False


def is_plaintext(value: Any) -> bool:
    """A secret written as it is: not vaulted (inline or a whole file), not a template."""
    if not isinstance(value, str) or not value.strip() or is_template(value):
        return False
    if type(value).__name__ == "EncryptedString":
        return False
    if VaultedValue is not None and VaultedValue.is_tagged_on(value):
        return False
    file = origin_file(value, "")
    return not (file and _encrypted_file(file))


def _mapping_entries(host: Host, pattern: str) -> Iterator[tuple[str, dict]]:
    key, _, option = pattern.partition("[].")
    value = host.vars.get(key)
    if not option:
        if isinstance(value, dict):
            yield key, value
        return
    for index, entry in enumerate(value if isinstance(value, list) else []):
        if isinstance(entry, dict) and isinstance(entry.get(option), dict):
            yield f"{key}[{index}].{option}", entry[option]


def check_plaintext_secrets(inventory: Inventory) -> Iterator[Problem]:
    """API keys, hub tokens and secret-named environment values are vaulted or looked up
    (a warning; never shows the value)."""
    default = inventory.sources[-1]
    hint = (
        "is written in plain text in the inventory; encrypt it (ansible-vault encrypt_string) "
        "or read it with a lookup (file, env)"
    )
    for host in inventory.hosts:
        for key in SECRET_KEYS:
            value = host.vars.get(key)
            if is_plaintext(value):
                yield Problem(origin_file(value, default), key, hint, severity="warning")
        for pattern in SECRET_MAPPINGS + ENVIRONMENT_MAPPINGS:
            every = pattern in SECRET_MAPPINGS
            for path, mapping in _mapping_entries(host, pattern):
                for name, value in mapping.items():
                    if not (every or (isinstance(name, str) and looks_secret(name))):
                        continue
                    if is_plaintext(value):
                        yield Problem(
                            _file(value, mapping, default=default),
                            f"{path}.{name}",
                            hint,
                            severity="warning",
                        )


# ---- fleet variables ----------------------------------------------------------------------

_BATCH = re.compile(r"\s*(\d+)\s*%\s*")


def check_reboot_batch(inventory: Inventory) -> Iterator[Problem]:
    """aiprov_reboot_batch (the nouveau play's serial): a count ≥ 1 or a percentage 1-100%."""
    default = inventory.sources[-1]
    for host in inventory.hosts:
        if "aiprov_reboot_batch" not in host.vars:
            continue
        value = host.vars["aiprov_reboot_batch"]
        if is_template(value):
            continue
        number = _as_int(value)
        percent = _BATCH.fullmatch(value) if isinstance(value, str) else None
        if (number is not None and number >= 1) or (percent and 1 <= int(percent[1]) <= 100):
            continue
        yield Problem(
            origin_file(value, default),
            "aiprov_reboot_batch",
            f"'{value}' is not a batch size: give a number of hosts (1 or more) or a "
            'percentage of the play\'s hosts, like "25%"',
        )
