"""Grafana provisioning (aiprov.dashboards' Grafana helpers, the monitoring
role's url mode): the dashboards as handed to Grafana, when a stored one or
the data source counts as outdated, and tests/fake_grafana.py, the stand-in
Molecule's vllm_service scenario runs the role against (no real Grafana can
run here), answering as Grafana's API does."""

import json
import urllib.error
import urllib.request

import jinja2
import pytest
import yaml

from aiprov import dashboards, paths
from fake_grafana import FakeGrafana

DATASOURCE = dashboards.grafana_datasource("http://127.0.0.1:9090", "15s")


def test_every_generated_dashboard_goes_to_grafana_with_its_datasource_set():
    sent = dashboards.for_grafana(DATASOURCE)
    assert sorted(d["uid"] for d in sent) == sorted(
        dashboards.DASHBOARDS[name]()["uid"] for name in dashboards.DASHBOARDS
    )
    for dashboard in sent:
        variable = next(v for v in dashboard["templating"]["list"] if v["type"] == "datasource")
        assert variable["current"] == {"text": "aiprov Prometheus", "value": "aiprov-prometheus"}
        generated = json.loads(
            (paths.data_dir() / "dashboards" / f"{dashboard['uid'][7:]}.json").read_text()
        )
        assert dashboard["panels"] == generated["panels"]


def test_outdated_compares_content_and_folder_not_grafanas_own_fields():
    wanted = dashboards.for_grafana(DATASOURCE)[0]
    stored = {"dashboard": {**wanted, "id": 7, "version": 3}, "meta": {"folderUid": "aiprov"}}
    assert not dashboards.grafana_outdated(stored, wanted, "aiprov")
    assert dashboards.grafana_outdated(stored, wanted, "other")
    assert dashboards.grafana_outdated(
        {**stored, "dashboard": {**wanted, "title": "x"}}, wanted, "aiprov"
    )
    assert dashboards.grafana_outdated(None, wanted, "aiprov")
    assert dashboards.grafana_outdated({"message": "Dashboard not found"}, wanted, "aiprov")


def test_the_datasource_is_outdated_only_when_a_field_aiprov_sets_differs():
    stored = {**DATASOURCE, "id": 3, "orgId": 1, "readOnly": False}
    assert not dashboards.grafana_datasource_outdated(stored, DATASOURCE)
    assert dashboards.grafana_datasource_outdated({**stored, "url": "http://x:9090"}, DATASOURCE)
    assert dashboards.grafana_datasource_outdated({"message": "not found"}, DATASOURCE)
    assert DATASOURCE["jsonData"]["timeInterval"] == "15s"


def _call(url, method="GET", token="t0ken", body=None):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_fake_checks_the_token_and_stores_what_is_posted():
    with FakeGrafana("t0ken") as fake:
        assert _call(f"{fake.url}/api/folders/aiprov", token="")[0] == 401
        assert _call(f"{fake.url}/api/folders/aiprov", token="wrong")[0] == 401
        assert _call(f"{fake.url}/api/folders/aiprov")[0] == 404
        dashboard = dashboards.for_grafana(DATASOURCE)[0]
        body = {"dashboard": dashboard, "folderUid": "aiprov", "overwrite": True}
        assert _call(f"{fake.url}/api/dashboards/db", "POST", body=body)[0] == 400  # no folder
        assert (
            _call(f"{fake.url}/api/folders", "POST", body={"uid": "aiprov", "title": "a"})[0] == 200
        )
        assert _call(f"{fake.url}/api/dashboards/db", "POST", body=body)[0] == 200
        status, stored = _call(f"{fake.url}/api/dashboards/uid/{dashboard['uid']}")
        assert status == 200 and not dashboards.grafana_outdated(stored, dashboard, "aiprov")
        again = {**body, "overwrite": False}
        assert _call(f"{fake.url}/api/dashboards/db", "POST", body=again)[0] == 412
        assert _call(f"{fake.url}/api/datasources", "POST", body=DATASOURCE)[0] == 200
        assert _call(f"{fake.url}/api/datasources", "POST", body=DATASOURCE)[0] == 409
        status, held = _call(f"{fake.url}/api/datasources/uid/aiprov-prometheus")
        assert status == 200 and not dashboards.grafana_datasource_outdated(held, DATASOURCE)
        assert fake.writes == {"folders": 1, "datasources": 1, "dashboards": 1}


@pytest.mark.parametrize("image", ["docker.io/grafana/grafana-oss:12.4.3@sha256:" + "a" * 64])
def test_the_compose_project_pins_the_image_and_mounts_the_provisioning(image):
    """Written, not proven (no Docker engine here): the template renders to a
    compose file whose image is pinned by digest, on the host's network,
    listening where the role says, with the provisioning mounted."""
    template = paths.roles_dir() / "monitoring" / "templates" / "grafana-compose.yaml.j2"
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    env.filters.update(to_json=json.dumps, hash=lambda text, kind: "0" * 40, string=str)
    text = env.from_string(template.read_text()).render(
        ansible_managed="managed",
        monitoring_grafana_image=image,
        monitoring_grafana_listen="127.0.0.1",
        monitoring_grafana_port=3000,
        _monitoring_grafana_provisioned_datasources={},
    )
    grafana = yaml.safe_load(text)["services"]["grafana"]
    assert "@sha256:" in grafana["image"] and grafana["network_mode"] == "host"
    assert grafana["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    assert "./provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]
    default = paths.role_defaults("monitoring")["monitoring_grafana_image"]
    assert "grafana/grafana-oss:" in default and "@sha256:" in default
