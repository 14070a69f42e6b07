"""The key-checking front: its routes (aiprov.gateway), the replicas behind
them (aiprov.vllm_services) and the nginx configuration the gateway role
writes from them. Molecule's vllm_service and funasr_service scenarios run
the same configuration in real nginx in front of real engines."""

import jinja2
import pytest
import yaml
from ansible.plugins.filter.core import to_bool

from aiprov import gateway, monitoring, paths, vllm_services

TEMPLATE = paths.roles_dir() / "gateway" / "templates" / "aiprov-gateway.conf.j2"
L20 = paths.profiles_dir() / "l20-8x"

SETTINGS = {
    "venv": "/opt/v",
    "user": "aiprov",
    "group": "aiprov",
    "home": "/var/lib/aiprov",
    "key_file": "/etc/aiprov/vllm-api-key.env",
    "host": "127.0.0.1",
    "engine_port_offset": 10000,
    "models_root": "/data/models",
    "catalog": [],
    "environment": {},
    "gpu": True,
    "start_timeout": 60,
    "restart_sec": 10,
    "restart_max_delay": 300,
    "limit_nofile": 1024,
}


def service(**overrides):
    return {"name": "llm", "model": "/m", "served_name": "LLM", "port": 8000, **overrides}


def render(routes, tls=False, listen="0.0.0.0", status_port=0):
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(
        gateway_nginx_string=gateway.nginx_string, gateway_listen=gateway.listen, bool=to_bool
    )
    return env.from_string(TEMPLATE.read_text()).render(
        ansible_managed="managed",
        _gateway_routes=routes,
        _gateway_tls=tls,
        _gateway_tls_certificate="/etc/nginx/aiprov-tls/aiprov-gateway.crt",
        _gateway_tls_certificate_key="/etc/nginx/aiprov-tls/aiprov-gateway.key",
        gateway_listen=listen,
        gateway_read_timeout=600,
        _gateway_status_port=status_port,
    )


def test_every_l20_service_gets_a_route_to_its_loopback_engine():
    host_vars = yaml.safe_load((L20 / "host_vars" / "l20-01.yml").read_text())
    host_vars["vllm_service_api_key"] = "k" * 32
    routes = gateway.checked_routes(host_vars)
    services = host_vars["vllm_service_services"]
    assert [r["name"] for r in routes] == [f"vllm-{s['name']}" for s in services]
    for route, entry in zip(routes, services, strict=True):
        assert route["port"] == entry["port"]
        assert route["backends"] == [f"127.0.0.1:{entry['port'] + 10000}"]
        assert route["key"] == route["upstream_key"] == "k" * 32


def test_replicas_split_the_gpus_and_take_consecutive_engine_ports():
    entry = service(gpus=[0, 1, 2, 3], tensor_parallel_size=2, replicas=2)
    units = vllm_services.units([entry, service(name="emb", port=8001, gpus=[1])], SETTINGS)
    assert [u["name"] for u in units] == [
        "aiprov-vllm-llm",
        "aiprov-vllm-llm.r1",
        "aiprov-vllm-emb",
    ]
    assert [u["environment"]["CUDA_VISIBLE_DEVICES"] for u in units] == ["0,1", "2,3", "1"]
    ports = [u["exec_start"][u["exec_start"].index("--port") + 1] for u in units]
    assert ports == ["18000", "18001", "18001"]  # validate refuses the collision
    hosts = {u["exec_start"][u["exec_start"].index("--host") + 1] for u in units}
    assert hosts == {"127.0.0.1"}
    # emb shares GPU 1 with the first replica only: it starts after that one.
    assert units[2]["after"] == ["aiprov-vllm-llm.service"]
    assert units[0]["health_url"] == "http://127.0.0.1:18000/health"


def test_a_service_off_loopback_is_exposed_directly_and_gets_no_route():
    entry = service(host="0.0.0.0")
    assert vllm_services.engine_endpoints(entry, "127.0.0.1") == [("0.0.0.0", 8000)]
    unit = vllm_services.units([entry], SETTINGS)[0]
    assert unit["exec_start"][-4:] == ["--host", "0.0.0.0", "--port", "8000"]
    assert unit["health_url"] == "http://127.0.0.1:8000/health"
    routes = gateway.routes({"vllm_service_services": [entry], "vllm_service_api_key": "abc"})
    assert routes == []


def test_per_service_keys_and_funasr_route():
    routes = gateway.checked_routes(
        {
            "vllm_service_services": [
                service(api_key="svc-key_1~+/="),
                service(name="b", port=8001),
            ],
            "vllm_service_api_key": "engine-key",
            "funasr_service_model": "paraformer",
            "funasr_service_proxy_enabled": True,
            "funasr_service_api_key": "asr-key",
        }
    )
    assert [(r["name"], r["key"], r["upstream_key"]) for r in routes] == [
        ("vllm-llm", "svc-key_1~+/=", "engine-key"),
        ("vllm-b", "engine-key", "engine-key"),
        ("funasr", "asr-key", ""),
    ]
    assert routes[2]["backends"] == ["127.0.0.1:10002"]
    assert routes[2]["max_body_size"] == "200m"


@pytest.mark.parametrize(
    "key", ['a"b', "a\\b", "$http_host", "a b", "a\nb", "", "caf\u00e9", "a=b", "a;b"]
)
def test_keys_nginx_or_http_cannot_carry_are_refused(key):
    assert gateway.token_problem(key)
    with pytest.raises(gateway.GatewayError):
        gateway.checked_routes({"vllm_service_services": [service()], "vllm_service_api_key": key})


@pytest.mark.parametrize("value", ['x"; return 200; "', "a\\", "$remote_addr", "a\nb"])
def test_nginx_strings_refuse_what_nginx_would_unescape_or_expand(value):
    with pytest.raises(gateway.GatewayError):
        gateway.nginx_string(value)


def test_the_configuration_checks_the_key_exactly_on_every_path():
    routes = gateway.checked_routes(
        {
            "vllm_service_services": [service(replicas=2, api_key="client-key")],
            "vllm_service_api_key": "engine-key",
        }
    )
    text = render(routes)
    # One location for every path, and the comparison is `if !=` (exact,
    # case-sensitive), not a map (which nginx matches ignoring case).
    assert text.count("location ") == 1 and "location / {" in text
    assert 'if ($http_authorization != "Bearer client-key") {' in text
    assert "map " not in text
    assert 'proxy_set_header Authorization "Bearer engine-key";' in text
    assert "least_conn;" in text
    assert "server 127.0.0.1:18000 " in text and "server 127.0.0.1:18001 " in text
    assert "listen 0.0.0.0:8000;" in text


def test_tls_and_ipv6_listen():
    routes = gateway.checked_routes(
        {"vllm_service_services": [service()], "vllm_service_api_key": "k"}
    )
    text = render(routes, tls=True, listen="::")
    assert "listen [::]:8000 ssl;" in text
    assert "ssl_certificate /etc/nginx/aiprov-tls/aiprov-gateway.crt;" in text
    with pytest.raises(gateway.GatewayError):
        gateway.listen("localhost; include /etc/shadow", 8000)


def test_a_monitored_host_gets_a_loopback_status_page():
    host = {"vllm_service_services": [service()], "vllm_service_api_key": "k"}
    assert gateway.status_port(host) is None
    monitored = {**host, "monitoring_enabled": True}
    port = gateway.status_port(monitored)
    assert port == paths.role_defaults("monitoring")["monitoring_nginx_status_port"]
    text = render(gateway.checked_routes(monitored), status_port=port)
    status = text[text.index("stub_status") - 400 :]
    assert f"listen 127.0.0.1:{port};" in status and "stub_status;" in status
    assert "allow 127.0.0.1;" in status and "deny all;" in status
    assert "stub_status" not in render(gateway.checked_routes(host))
    # Nothing served, nothing to count: no page (the role removes its configuration).
    assert gateway.status_port({"monitoring_enabled": True}) is None


def test_the_monitoring_route_serves_each_exporter_behind_the_scrape_key():
    host_vars = {
        "vllm_service_services": [service()],
        "vllm_service_api_key": "engine-key",
        "funasr_service_model": "paraformer",
        "monitoring_enabled": True,
        "monitoring_scrape_key": "scrape-key-0123",
    }
    scraped = monitoring.placement(host_vars, "h1", {"all": ["h1"], "monitoring": ["mon"]})
    assert scraped["server"] == "mon" and not scraped["prometheus"]
    (route,) = [r for r in gateway.checked_routes(host_vars, scraped) if r["name"] == "monitoring"]
    assert route["port"] == 9190 and route["key"] == "scrape-key-0123"
    text = render([route])
    # The key is checked for the whole server, before any location.
    assert text.index('if ($http_authorization != "Bearer scrape-key-0123")') < text.index(
        "location "
    )
    assert 'location = "/vllm/aiprov-vllm-llm/metrics" {' in text
    assert "proxy_pass http://127.0.0.1:18000/metrics;" in text
    # The blackbox exporter probes FunASR's /health and nothing a client names.
    assert 'set $args "module=http_2xx&target=http://127.0.0.1:10002/health";' in text
    assert text.count('set $args "";') == 3  # node, the engine, nginx
    assert "/prometheus/" not in text  # the fleet's Prometheus runs elsewhere
    # Where the Prometheus runs, its API too; without a key, no route at all.
    alone = monitoring.placement(host_vars, "h1", {"all": ["h1"]})
    (route,) = [r for r in gateway.routes(host_vars, alone) if r["name"] == "monitoring"]
    assert 'location ^~ "/prometheus/api/v1/" {' in render([route])
    keyless = {**host_vars, "monitoring_scrape_key": ""}
    assert all(r["name"] != "monitoring" for r in gateway.routes(keyless, alone))
