"""checks_values: the values the argument specs let through, for every role."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from aiprov import checks_mirrors, checks_values, gpu_families, paths, schema, validate
from aiprov.cli import main
from aiprov.inventory import Host, Inventory

DEFAULT = "inv.yml"


def _inventory(groups=("a10",), **host_vars) -> Inventory:
    return Inventory(sources=[DEFAULT], hosts=[Host("gpu01", list(groups), dict(host_vars))])


def _problems(rule, **host_vars) -> list[str]:
    return [str(p) for p in rule(_inventory(**host_vars))]


# ---- control characters ---------------------------------------------------------------


def test_control_characters_are_found_with_their_path():
    found = _problems(
        checks_values.check_control_characters,
        vllm_service_services=[{"name": "a", "served_name": "A\n", "extra_args": ["--x\r"]}],
        vllm_service_environment={"GOOD": "1", "BAD\x00": "x"},
        base_chrony_servers=["ntp.example", "ntp\t.example"],
    )
    assert any(
        p.startswith(
            "inv.yml: vllm_service_services[0].served_name: contains the control character \\n"
        )
        for p in found
    )
    assert any(
        "vllm_service_services[0].extra_args[0]: contains the control character \\r" in p
        for p in found
    )
    assert any(
        "vllm_service_environment: a key contains the control character \\x00" in p for p in found
    )
    assert any("base_chrony_servers[1]: contains the control character \\t" in p for p in found)
    assert len(found) == 4


def test_templates_and_other_peoples_variables_are_left_alone():
    found = _problems(
        checks_values.check_control_characters,
        vllm_service_api_key="{{ lookup('file', '/x')\n }}",
        my_own_note="line one\nline two",
    )
    assert found == []


def test_a_deeply_nested_value_does_not_overflow():
    value: list = ["x\n"]
    for _ in range(5000):
        value = [value]
    found = _problems(checks_values.check_control_characters, base_sysctl_extra={"k": value})
    assert len(found) == 1 and found[0].endswith("remove it")


# ---- NaN and infinity, strings for booleans, minimums ------------------------------------


def test_nan_and_infinity_anywhere():
    found = _problems(
        checks_values.check_non_finite,
        aiprov_gpu_memory_gib=float("nan"),
        mineru_services=[{"name": "api", "gpu_memory_utilization": float("-inf")}],
        base_sysctl={"vm.swappiness": float("inf")},
        vllm_service_services=[{"name": "a", "gpu_memory_utilization": "NaN"}],
    )
    assert (
        "inv.yml: aiprov_gpu_memory_gib: NaN is not a number aiprov or the roles can use" in found
    )
    assert any(
        p.startswith("inv.yml: mineru_services[0].gpu_memory_utilization: -infinity") for p in found
    )
    assert any(p.startswith("inv.yml: base_sysctl.vm.swappiness: infinity") for p in found)
    assert any("vllm_service_services[0].gpu_memory_utilization: 'NaN'" in p for p in found)


@pytest.mark.parametrize(
    ("word", "meant"), [("no", "false"), ("yes", "true"), ("False", "false"), ("on", "true")]
)
def test_strings_where_booleans_belong(word, meant):
    found = _problems(checks_values.check_bool_strings, base_chrony_enabled=word)
    assert len(found) == 1
    assert found[0].startswith(f"inv.yml: base_chrony_enabled: '{word}' is a string, not a boolean")
    assert found[0].endswith(f"write {meant} without quotes")


def test_nested_bool_strings_and_real_booleans():
    found = _problems(
        checks_values.check_bool_strings,
        vllm_service_services=[{"name": "a", "warmup": "yes", "enable_auto_tool_choice": True}],
        dify_enabled=False,
        base_service_user="no",  # a str variable may well be "no"
    )
    assert [p.split(": ")[1] for p in found] == ["vllm_service_services[0].warmup"]


def test_negative_counts_and_timeouts():
    found = _problems(
        checks_values.check_minimums,
        base_apt_retries=-1,
        models_hub_timeout="-5",
        vllm_service_restart_sec=0,
        vllm_service_services=[
            {"name": "a", "max_model_len": 0},
            {"name": "b", "max_model_len": 1},
        ],
        docker_log_max_file=0,
    )
    assert sorted(p.split(": ")[1] for p in found) == [
        "base_apt_retries",
        "docker_log_max_file",
        "models_hub_timeout",
        "vllm_service_services[0].max_model_len",
    ]
    assert "inv.yml: base_apt_retries: -1 is below 0: it must be 0 or more" in found


def test_every_integer_variable_has_a_minimum_or_a_rule_of_its_own():
    """A new *_timeout is covered by its name; anything else must be decided here."""
    elsewhere = {
        # ports: check_ports and vllm_checks.check_ports
        "port",
        "dify_expose_nginx_port",
        "dify_expose_nginx_ssl_port",
        "funasr_service_port",
        "funasr_service_proxy_port",
        "models_cache_port",
        "monitoring_prometheus_port",
        "monitoring_node_exporter_port",
        "monitoring_alertmanager_port",
        "monitoring_blackbox_port",
        "monitoring_dcgm_exporter_port",
        "monitoring_nginx_status_port",
        "monitoring_nginx_exporter_port",
        "monitoring_grafana_port",
        "monitoring_gateway_port",
        "bundle_host_index_port",
        "bundle_host_hub_port",
        "bundle_host_apt_port",
        "bundle_host_registry_port",
        # GPU counts and indexes: vllm_checks and checks_stacks, with the host's GPUs
        "gpus",
        "tensor_parallel_size",
        "pipeline_parallel_size",
        "data_parallel_size",
        # vLLM replicas: checks_gateway.check_engine_exposure, with the GPUs they split
        "replicas",
        # a multi-node service's rendezvous port: checks_multinode, 1024-65535 and free
        "master_port",
        # the load of a service's slo: (aiprov check): slo.check_slo, at least 1
        "concurrency",
        "requests",
        "input_tokens",
        "output_tokens",
    }
    missing = []
    for options in schema.specs().values():
        for path, spec in _options(options):
            name = path.split(".")[-1]
            integer = spec.get("type") == "int" or spec.get("elements") == "int"
            if integer and checks_values.minimum_of(name) is None and name not in elsewhere:
                missing.append(path)
    assert missing == []


def _options(options: dict, prefix: str = ""):
    for name, spec in options.items():
        yield prefix + name, spec
        if spec.get("options"):
            yield from _options(spec["options"], prefix + name + ".")


# ---- ports --------------------------------------------------------------------------------


def test_ports_of_every_role_are_in_range():
    found = _problems(
        checks_values.check_ports,
        funasr_service_port=0,
        models_cache_port=70000,
        dify_expose_nginx_ssl_port=-1,
    )
    assert "inv.yml: funasr_service_port: 0 is not a port (1-65535)" in found
    assert "inv.yml: models_cache_port: 70000 is not a port (1-65535)" in found
    assert "inv.yml: dify_expose_nginx_ssl_port: -1 is not a port (1-65535)" in found


def test_ports_collide_only_where_the_roles_run():
    common = {"funasr_service_port": 8730}
    # The fleet cache runs on the cache host only, FunASR only with a model.
    assert _problems(checks_values.check_ports, **common, models_cache_host="other") == []
    assert _problems(checks_values.check_ports, **common, models_cache_host="gpu01") == []
    found = _problems(
        checks_values.check_ports, **common, models_cache_host="gpu01", funasr_service_model="m"
    )
    assert found == [
        "inv.yml: models_cache_port: 8730 is already the port of funasr_service_port on this host"
    ]


def test_the_bundle_hosts_ports_count_only_on_a_bundle_host():
    common = {"funasr_service_model": "m", "funasr_service_port": 8780}
    assert _problems(checks_values.check_ports, **common) == []
    found = [str(p) for p in checks_values.check_ports(_inventory(("bundle_host",), **common))]
    assert found == [
        "inv.yml: funasr_service_port: 8780 is already the port of bundle_host_index_port"
        " on this host"
    ]


def test_the_bundle_hosts_registry_port_is_taken_on_a_bundle_host():
    common = {"funasr_service_model": "m", "funasr_service_port": 8783}
    assert _problems(checks_values.check_ports, **common) == []
    found = [str(p) for p in checks_values.check_ports(_inventory(("bundle_host",), **common))]
    assert found == [
        "inv.yml: funasr_service_port: 8783 is already the port of bundle_host_registry_port"
        " on this host"
    ]


def test_the_funasr_proxy_port_counts_only_with_the_proxy_on():
    values = {"funasr_service_model": "m", "funasr_service_proxy_port": 10002}
    assert _problems(checks_values.check_ports, **values) == []
    found = _problems(checks_values.check_ports, **values, funasr_service_proxy_enabled=True)
    assert found == [
        "inv.yml: funasr_service_proxy_port: 10002 is already the port of funasr_service_port "
        "on this host"
    ]


def test_mineru_ports_against_the_other_roles():
    found = _problems(
        checks_values.check_ports,
        dify_enabled=True,
        mineru_services=[
            {"name": "api", "gpus": [0], "gpu_memory_utilization": 0.1, "port": 80},
            {"name": "gradio", "gpus": [0], "gpu_memory_utilization": 0.1, "port": 99999},
        ],
    )
    assert found == [
        "inv.yml: mineru_services[api].port: 80 is already the port of dify_expose_nginx_port "
        "on this host",
        "inv.yml: mineru_services[gradio].port: 99999 is not a port (1-65535)",
    ]


# ---- URLs -----------------------------------------------------------------------------------


def test_every_url_variable_is_checked_by_one_rule():
    names = set()
    for options in schema.specs().values():
        for path, _spec in _options(options):
            last = path.split(".")[-1]
            if re.search(r"(_url|_urls|_endpoint|_mirrors)$", last):
                names.add(path)
    covered = set(checks_values.URL_KEYS) | checks_values.mirror_url_keys()
    covered = {k.replace("[]", "") for k in covered}
    assert names <= covered
    assert not set(checks_values.URL_KEYS) & checks_values.mirror_url_keys()


@pytest.mark.parametrize(
    ("key", "url", "why"),
    [
        ("models_hf_endpoint", "ftp://hf-mirror.example", "'ftp://'"),
        ("models_modelscope_endpoint", "www.modelscope.cn", "no scheme"),
        ("cuda_toolkit_runfile_url", "https:///cuda.run", "names no host"),
        ("vllm_service_pip_index_url", "https://mirror example/simple", "whitespace"),
    ],
)
def test_other_roles_urls_share_the_mirror_rule(key, url, why):
    found = _problems(checks_values.check_urls, **{key: url})
    assert len(found) == 1 and found[0].startswith(f"inv.yml: {key}: ") and why in found[0]


@pytest.mark.parametrize(
    ("values", "key"),
    [
        ({"models_hf_endpoint": "https://bob:s3cr3t-pw@hf.example"}, "models_hf_endpoint"),
        (
            {"python_env_pip_index_url": "https://bob:s3cr3t-pw@pypi.example/simple"},
            "python_env_pip_index_url",
        ),
        (
            {"docker_registry_mirrors": ["https://ok.example", "https://s3cr3t-pw@r.example"]},
            "docker_registry_mirrors[1]",
        ),
        (
            {"dify_models": [{"name": "m", "endpoint_url": "http://u:s3cr3t-pw@h:1/v1"}]},
            "dify_models[0].endpoint_url",
        ),
    ],
)
def test_credentials_in_urls_are_refused_without_showing_them(values, key):
    found = _problems(checks_values.check_urls, **values)
    assert len(found) == 1, found
    assert found[0].startswith(f"inv.yml: {key}: ") and "carries credentials" in found[0]
    assert "Vault" in found[0] and "s3cr3t-pw" not in found[0] and "***@" in found[0]


def test_templated_and_empty_urls_pass():
    assert (
        _problems(
            checks_values.check_urls,
            models_hf_endpoint="{{ my_hub }}",
            vllm_service_pip_index_url="",
            dify_console_url="http://127.0.0.1:10080",
        )
        == []
    )


# ---- models ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("repo", "why"),
    [
        ("https://huggingface.co/Qwen/Qwen3-8B", "is a URL"),
        ("/data/models/qwen", "is a path"),
        ("../qwen", "is a path"),
        ("-rf/x", "starts with '-'"),
        ("Qwen3-8B", "is not a repository id"),
        ("Qwen/Qwen3/8B", "is not a repository id"),
    ],
)
def test_repo_ids(repo, why):
    assert why in checks_values.repo_problem(repo)
    assert checks_values.repo_problem("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B") is None


@pytest.mark.parametrize("model_id", ["..", ".", "a/b", "-x", "a b", "qwen\n", "模型", ""])
def test_bad_catalog_ids(model_id):
    assert "is not a usable id" in checks_values.id_problem(model_id)


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/", "system directory"),
        ("/tmp", "system directory"),
        ("/etc/", "system directory"),
        ("/tmp/models", "under /tmp"),
        ("/data/../etc", "'..'"),
        ("data/models", "not an absolute path"),
    ],
)
def test_models_directories(path, why):
    assert why in checks_values.directory_problem(path)
    assert checks_values.directory_problem("/data/models") is None
    assert checks_values.directory_problem("/srv/models") is None


def test_catalog_entries_are_reported_with_their_index():
    found = _problems(
        checks_values.check_models_values,
        models_root="/tmp",
        models_catalog=[
            {"id": "ok", "hub": "huggingface", "repo": "a/b"},
            {"id": "../x", "hub": "huggingface", "repo": "https://hf.co/a/b", "local_dir": "/usr"},
            {"id": "rel", "hub": "huggingface", "repo": "a/b", "local_dir": "rel/dir"},
        ],
    )
    assert sorted(p.split(": ")[1] for p in found) == [
        "models_catalog[1].id",
        "models_catalog[1].local_dir",
        "models_catalog[1].repo",
        "models_root",
    ]


# ---- groups, FunASR, secrets, reboot batch ---------------------------------------------------


def test_a_host_in_two_gpu_families():
    assert set(gpu_families.names()) >= {"a10", "a100", "l20", "h100", "h20", "rtx4090"}
    found = _problems(checks_values.check_gpu_family_groups, groups=("a10", "l20", "rack1"))
    assert found == [
        "inv.yml: gpu01: is in the GPU-family groups a10 and l20: their group_vars (GPU model, "
        "memory, count) contradict each other and Ansible silently keeps one; put the host in "
        "the one group that matches its GPUs"
    ]
    assert _problems(checks_values.check_gpu_family_groups, groups=("a10", "rack1")) == []


@pytest.mark.parametrize(
    ("listen", "proxy", "bad"),
    [
        ("0.0.0.0", True, True),
        ("10.0.0.5", True, True),
        ("::", True, True),
        ("127.0.0.1", True, False),
        ("localhost", True, False),
        ("::1", True, False),
        ("0.0.0.0", False, False),
    ],
)
def test_funasr_behind_its_proxy_listens_on_the_loopback(listen, proxy, bad):
    found = _problems(
        checks_values.check_funasr_binding,
        funasr_service_model="paraformer",
        funasr_service_host=listen,
        funasr_service_proxy_enabled=proxy,
    )
    assert bool(found) == bad
    if bad:
        assert found[0].startswith(f"inv.yml: funasr_service_host: '{listen}' lets clients")


def test_plaintext_secrets_are_warnings_that_never_show_the_value():
    inventory = _inventory(
        vllm_service_api_key="sk-plain-123456",
        models_hf_token="{{ lookup('env', 'HF_TOKEN') }}",
        vllm_service_environment={"HF_TOKEN": "hf_plain_123456", "TOKENIZERS_PARALLELISM": "false"},
        vllm_service_services=[{"name": "a", "environment": {"OPENAI_API_KEY": "sk-x-123456"}}],
        dify_secrets={"SECRET_KEY": "dify-plain-123456"},
        funasr_service_environment={"MODEL_KEY_FILE": "/etc/key"},
    )
    found = list(checks_values.check_plaintext_secrets(inventory))
    assert {p.severity for p in found} == {"warning"}
    assert sorted(p.key for p in found) == [
        "dify_secrets.SECRET_KEY",
        "vllm_service_api_key",
        "vllm_service_environment.HF_TOKEN",
        "vllm_service_services[0].environment.OPENAI_API_KEY",
    ]
    assert not any("plain-123456" in str(p) or "sk-x" in str(p) for p in found)


@pytest.mark.parametrize(
    "name", ["HF_TOKEN", "OPENAI_API_KEY", "DB_PASSWORD", "SECRET_KEY", "aws_secret_access_key"]
)
def test_secret_names(name):
    assert checks_values.looks_secret(name)


@pytest.mark.parametrize(
    "name", ["TOKENIZERS_PARALLELISM", "KEY_FILE", "HF_TOKEN_PATH", "VLLM_CPU_KVCACHE_SPACE"]
)
def test_not_secret_names(name):
    assert not checks_values.looks_secret(name)


def test_vaulted_secrets_are_not_plaintext(tmp_path):
    password = tmp_path / "pw"
    password.write_text("pw\n")
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    gpu01:\n")
    (tmp_path / "host_vars").mkdir()
    from ansible.parsing.vault import VaultLib, VaultSecret

    vault = VaultLib([("default", VaultSecret(b"pw"))])
    token = vault.encrypt("hf_secret_123456").decode()
    inline = "models_hf_token: !vault |\n" + "".join(f"  {line}\n" for line in token.splitlines())
    (tmp_path / "host_vars" / "gpu01.yml").write_text(
        inline + "models_modelscope_token: ms_plain_123456\n"
    )
    args = ["validate", "--strict", "--vault-password-file", str(password), "-i", str(tmp_path)]
    result = CliRunner().invoke(main, args)
    assert "models_modelscope_token: warning: is written in plain text" in result.output
    assert "models_hf_token" not in result.output
    assert "123456" not in result.output
    assert result.exit_code == 4


@pytest.mark.parametrize(
    ("value", "bad"),
    [(2, False), ("25%", False), ("100%", False), (0, True), ("0%", True), ("150%", True),
     ("half", True)],
)  # fmt: skip
def test_reboot_batch(value, bad):
    found = _problems(checks_values.check_reboot_batch, aiprov_reboot_batch=value)
    assert bool(found) == bad


# ---- valid input stays valid --------------------------------------------------------------


def test_every_aiprov_variable_the_playbooks_and_roles_read_is_known():
    """`aiprov_reboot_batch` and the like must not be refused as unknown."""
    read = set()
    for path in [*paths.roles_dir().rglob("*.yml"), *paths.roles_dir().rglob("*.j2"),
                 *(paths.share_dir() / "playbooks").rglob("*.yml")]:  # fmt: skip
        text = path.read_text()
        text = re.sub(r"\$aiprov_\w+", "", text)  # nginx variables in templates
        read |= set(re.findall(r"\baiprov_[a-z0-9_]+", text))
    groups = {v for v in read if v.endswith("_hosts") or v.startswith("aiprov_vllm_service_")}
    plugins = {p.stem for p in paths.share_dir().glob("*/**/action_plugins/*.py")}
    plugins |= {p.stem for p in paths.share_dir().glob("playbooks/action_plugins/*.py")}
    groups |= plugins  # modules and action plugins named aiprov_*
    known = set(schema.specs()["aiprov"])
    assert read - groups - known == set()
    for name in ("aiprov_reboot_batch", "aiprov_reboot_required"):
        assert name in known


def test_clean_values_with_templates_pass_every_rule():
    inventory = _inventory(
        aiprov_reboot_batch="25%",
        aiprov_gpu_memory_gib="{{ 44.9 }}",
        base_chrony_enabled=True,
        base_apt_retries="{{ retries }}",
        funasr_service_host="{{ ansible_default_ipv4.address }}",
        funasr_service_proxy_enabled=True,
        funasr_service_model="m",
        models_root="/data/models",
        models_catalog=[{"id": "qwen3-8b", "hub": "huggingface", "repo": "Qwen/Qwen3-8B"}],
        models_hf_endpoint="https://hf-mirror.com",
        vllm_service_api_key="{{ vault_vllm_key }}",
    )
    for rule in (getattr(checks_values, n) for n in dir(checks_values) if n.startswith("check_")):
        assert list(rule(inventory)) == [], rule.__name__


# ---- hostile strings in every string variable that reaches a host --------------------------

HOSTILE_CONTROL = ["a\nb", "name\n", "\r", "x\x00y", "\x1b[31mred", "tab\there", "del\x7f",
                   "nel\x85", "line\u2028sep"]  # fmt: skip
HOSTILE_OTHER = ['"', "'", "$(reboot)", "`id`", "%s%n%", "模型-名", "🚀", "a" * 300, "; rm -rf /",
                 "..", "-rf", "{#", "\\", "}}"]  # fmt: skip


def _sample(spec: dict):
    """A value of `spec`'s type that its schema accepts."""
    if spec.get("choices"):
        return spec["choices"][0]
    kind = spec.get("type", "str")
    if kind == "list":
        if spec.get("options"):
            return [_entry(spec["options"])]
        return [0] if spec.get("elements") == "int" else []
    return {"int": 1, "float": 0.1, "bool": False, "dict": {}}.get(kind, "x")


def _entry(options: dict) -> dict:
    return {n: _sample(s) for n, s in options.items() if s.get("required")}


def string_targets() -> list[tuple[str, dict, str]]:
    """(variable, its value with HOSTILE in one string, the path of that string) for every
    string that reaches a host: str and path options, str list elements, values of dicts."""
    targets = []
    for _role, options in sorted(schema.specs().items()):
        for key, spec in sorted(options.items()):
            kind = spec.get("type", "str")
            if spec.get("choices"):
                continue  # the schema refuses anything else
            if kind in ("str", "path", "raw"):
                targets.append((key, {key: "HOSTILE"}, key))
            elif (
                kind == "list" and spec.get("elements", "str") == "str" and not spec.get("options")
            ):
                targets.append((key, {key: ["HOSTILE"]}, f"{key}[0]"))
            elif kind == "dict" and not spec.get("options"):
                targets.append((key, {key: {"K": "HOSTILE"}}, f"{key}.K"))
            elif kind == "list" and spec.get("options"):
                for name, sub in sorted(spec["options"].items()):
                    if sub.get("choices") or sub.get("type", "str") not in ("str", "path"):
                        continue
                    entry = {**_entry(spec["options"]), name: "HOSTILE"}
                    targets.append((key, {key: [entry]}, f"{key}[0].{name}"))
    return targets


def _with(values, text):
    if values == "HOSTILE":
        return text
    if isinstance(values, list):
        return [_with(v, text) for v in values]
    if isinstance(values, dict):
        return {k: _with(v, text) for k, v in values.items()}
    return values


def test_the_targets_cover_the_services():
    paths_ = {t[2] for t in string_targets()}
    assert {"vllm_service_services[0].served_name", "vllm_service_services[0].name",
            "base_service_user", "vllm_service_environment.K", "models_catalog[0].repo",
            "base_extra_packages[0]"} <= paths_  # fmt: skip
    assert len(paths_) > 100


@pytest.mark.parametrize("text", HOSTILE_CONTROL + HOSTILE_OTHER, ids=ascii)
def test_hostile_strings_in_every_string_variable(text):
    control = bool(checks_values._CONTROL.search(text))
    for _key, values, path in string_targets():
        inventory = _inventory(**_with(values, text))
        found = validate.validate(inventory)  # must not raise
        ours = [p for p in found if p.key == path and "control character" in p.message]
        if control:
            assert len(ours) == 1, (path, [str(p) for p in found])
            assert ours[0].file == DEFAULT and ours[0].severity == "error"
        else:
            assert ours == [], path


@pytest.mark.parametrize("text", ["served\nname", "x\r", "nul\x00", "\x1b]0;t\x07"], ids=ascii)
def test_hostile_strings_through_the_cli(tmp_path, text):
    """From a real file, through Ansible's loader: FILE: KEY: message, exit 4, no traceback."""
    (tmp_path / "hosts.yml").write_text(
        "all:\n  children:\n    a10:\n      hosts:\n        gpu01:\n"
    )
    (tmp_path / "host_vars").mkdir()
    host_vars = tmp_path / "host_vars" / "gpu01.yml"
    host_vars.write_text(
        yaml.safe_dump(
            {
                "base_service_user": text,
                "vllm_service_environment": {"NOTE": text},
                "models_catalog": [
                    {"id": "m", "hub": "huggingface", "repo": "a/b", "revision": text}
                ],
            },
            allow_unicode=False,
        )
    )
    result = CliRunner().invoke(main, ["validate", "-i", str(tmp_path)])
    output = result.output
    assert result.exit_code == 4, output
    assert "Traceback" not in output and (
        result.exception is None or isinstance(result.exception, SystemExit)
    )
    for key in ("base_service_user", "vllm_service_environment.NOTE", "models_catalog[0].revision"):
        assert f"{host_vars}: {key}: contains the control character" in output, key


def test_mirror_url_keys_are_still_there():
    """check_urls relies on checks_mirrors' key lists; if they move, this says so."""
    assert checks_values.mirror_url_keys() >= {
        "python_env_pip_index_url",
        "docker_registry_mirrors[]",
    }
    assert hasattr(checks_mirrors, "url_problem")


def test_broken_corpus_paths_exist():
    assert (Path(__file__).parent / "broken").is_dir()


@pytest.mark.parametrize("model", ["/" + "a" * 300, "a" * 300, "/x\x00y"], ids=ascii)
def test_paths_no_system_can_hold_do_not_crash_validate_or_plan(model):
    """A 300-character name or a NUL reaches os.stat (models_root, a model path)."""
    from aiprov import plan

    entry = {"id": "m" if model.startswith("/") else model, "hub": "huggingface", "repo": "a/b"}
    service = {"name": "a", "model": model, "served_name": "a", "gpus": [0], "port": 8000}
    inventory = _inventory(
        models_root="/" + "r" * 300,
        models_catalog=[{**entry, "local_dir": "/" + "d" * 300}],
        vllm_service_services=[service],
        aiprov_gpu_count=4,
        aiprov_gpu_memory_gib=22.0,
    )
    validate.validate(inventory)
    plan.plan(inventory, DEFAULT)
