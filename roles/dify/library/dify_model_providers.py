#!/usr/bin/python
"""Register OpenAI-API-compatible models in Dify through its console API.

Written against Dify 1.13's console API as its source defines it
(api/controllers/console/setup.py, auth/login.py, libs/token.py,
workspace/model_providers.py, workspace/models.py): cookie sessions with a
CSRF header, base64-encoded login passwords, and per-model credentials
(`/models/credentials`). Standard library only: it runs on the Dify host.
"""

from __future__ import annotations

import base64
import hashlib
import http.cookiejar
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
module: dify_model_providers
short_description: Register OpenAI-API-compatible models (LLM, text embedding, rerank) in Dify
description:
  - Creates Dify's admin account on a fresh install, logs in to the console API, and makes
    sure each model has a credential with the wanted endpoint, key and context size under
    the OpenAI-API-compatible provider. Idempotent; supports check mode.
  - A credential's name carries a fingerprint of its settings (key included), so a changed
    endpoint, key or context size is updated in place and an unchanged one is left alone.
options:
  console_url:
    description: Dify's base URL (nginx), without /console/api.
    type: str
    required: true
  admin_email:
    description: Admin account email.
    type: str
    required: true
  admin_name:
    description: Admin account name, used only when the first-run setup creates it.
    type: str
    default: admin
  admin_password:
    description: Admin account password.
    type: str
    required: true
  provider:
    description: Provider to register the models under.
    type: str
    default: langgenius/openai_api_compatible/openai_api_compatible
  api_key:
    description: API key of the model endpoints (empty for none).
    type: str
    default: ""
  models:
    description: Models to register; empty means derive them from I(vllm_services).
    type: list
    elements: dict
    default: []
  vllm_services:
    description: aiprov vLLM services (vllm_service_services) to derive the models from.
    type: list
    elements: dict
    default: []
  vllm_host:
    description: Host name or address where Dify's containers reach the vLLM services (the front).
    type: str
    default: 127.0.0.1
  vllm_scheme:
    description: C(https) when the front serves TLS.
    type: str
    default: http
    choices: [http, https]
  service_api_keys:
    description: A service's own key (its C(api_key)), by service name; the others use I(api_key).
    type: dict
    default: {}
  timeout:
    description: Seconds to wait for each HTTP request.
    type: int
    default: 30
"""

RETURN = r"""
models:
  description: One entry per model, with the action taken (created, updated, unchanged).
  type: list
  returned: always
"""

DEFAULT_PROVIDER = "langgenius/openai_api_compatible/openai_api_compatible"
MODEL_TYPES = ("llm", "text-embedding", "rerank")
# Dify's libs/password.py: at least 8 characters, a letter and a digit.
_PASSWORD_RULE = re.compile(r"^(?=.*[a-zA-Z])(?=.*\d).{8,}$")
_CSRF_COOKIES = ("csrf_token", "__Host-csrf_token")


class DifyError(Exception):
    """Dify refused a request or answered something unexpected."""


def model_type_of(service: dict[str, Any]) -> str:
    """llm, text-embedding or rerank for an aiprov vLLM service."""
    if service.get("runner") != "pooling":
        return "llm"
    names = f"{service.get('name', '')} {service.get('served_name', '')}".lower()
    return "rerank" if "rerank" in names else "text-embedding"


def models_from_vllm(
    services: list[dict[str, Any]],
    host: str,
    scheme: str = "http",
    keys: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """The Dify models for aiprov's vLLM services (vllm_service_services),
    reached through the key-checking front; `keys`: a service's own key, by name."""
    models = []
    for service in services:
        model = {
            "name": service.get("served_name") or service["name"],
            "type": model_type_of(service),
            "endpoint_url": f"{scheme}://{host}:{service['port']}/v1",
            "context_size": int(service.get("max_model_len") or 4096),
        }
        if (keys or {}).get(service["name"]):
            model["api_key"] = keys[service["name"]]
        if model["type"] == "llm" and service.get("enable_auto_tool_choice"):
            model["function_calling_type"] = "tool_call"
        models.append(model)
    return models


def credentials_for(model: dict[str, Any], api_key: str) -> dict[str, str]:
    """The credential form of the OpenAI-API-compatible provider for one model.

    Field names and the per-type required fields are the plugin's
    model_credential_schema; every value is a string, as the console sends them.
    """
    kind = model["type"]
    if kind not in MODEL_TYPES:
        raise DifyError(
            f"model {model.get('name')!r}: type must be one of "
            f"{', '.join(MODEL_TYPES)}, not {kind!r}"
        )
    context = str(int(model.get("context_size") or 4096))
    creds = {"endpoint_url": str(model["endpoint_url"]), "context_size": context}
    if model.get("api_key") or api_key:
        creds["api_key"] = str(model.get("api_key") or api_key)
    if kind == "llm":
        creds["mode"] = str(model.get("mode", "chat"))
        creds["max_tokens_to_sample"] = str(int(model.get("max_tokens") or context))
        creds["function_calling_type"] = str(model.get("function_calling_type", "no_call"))
    elif kind == "text-embedding":
        creds["max_chunks"] = str(int(model.get("max_chunks") or 32))
    creds.update({k: str(v) for k, v in (model.get("credentials") or {}).items()})
    return creds


def fingerprint(creds: dict[str, str]) -> str:
    """Credential name (Dify allows 30 characters) that changes with any setting."""
    digest = hashlib.sha256(json.dumps(creds, sort_keys=True).encode()).hexdigest()
    return f"aiprov-{digest[:16]}"


class Console:
    """A logged-in session with Dify's console API."""

    def __init__(self, url: str, timeout: int = 30):
        self.api = url.rstrip("/") + "/console/api"
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def _csrf(self) -> str | None:
        for cookie in self.jar:
            if cookie.name in _CSRF_COOKIES:
                return cookie.value
        return None

    def call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ):
        url = self.api + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(url, data=data, method=method)
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        csrf = self._csrf()
        if csrf:
            # libs/token.py check_csrf_token: header must equal the csrf_token cookie.
            request.add_header("X-CSRF-Token", csrf)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as error:
            raw = error.read()
            try:
                detail = json.loads(raw).get("message") or raw.decode(errors="replace")
            except (ValueError, AttributeError):
                detail = raw.decode(errors="replace")
            raise DifyError(f"{method} {path}: HTTP {error.code}: {detail}".strip()) from None
        except urllib.error.URLError as error:
            raise DifyError(f"{method} {path}: {error.reason}") from None
        return json.loads(raw) if raw.strip() else {}

    def ensure_admin(self, email: str, name: str, password: str) -> bool:
        """Run Dify's first-run setup if nobody has; True when it created the admin."""
        if self.call("GET", "/setup").get("step") == "finished":
            return False
        if not _PASSWORD_RULE.match(password):
            raise DifyError("the admin password needs 8+ characters with a letter and a digit")
        self.call("POST", "/setup", {"email": email, "name": name, "password": password})
        return True

    def login(self, email: str, password: str) -> None:
        # The console decodes the password field from base64 (controllers/console/wraps.py).
        encoded = base64.b64encode(password.encode()).decode()
        answer = self.call(
            "POST", "/login", {"email": email, "password": encoded, "remember_me": True}
        )
        if answer.get("result") != "success":
            raise DifyError(f"login as {email} failed: {answer.get('data') or answer}")

    def providers(self) -> list[str]:
        return [
            item.get("provider")
            for item in self.call("GET", "/workspaces/current/model-providers").get("data", [])
        ]

    def _credentials_path(self, provider: str) -> str:
        return f"/workspaces/current/model-providers/{provider}/models/credentials"

    def model_credential(self, provider: str, model: str, model_type: str) -> dict[str, Any]:
        return self.call(
            "GET",
            self._credentials_path(provider),
            query={"model": model, "model_type": model_type},
        )

    def create_model_credential(
        self, provider: str, model: str, model_type: str, creds: dict, name: str
    ) -> None:
        body = {"model": model, "model_type": model_type, "credentials": creds, "name": name}
        self.call("POST", self._credentials_path(provider), body)

    def update_model_credential(
        self, provider: str, model: str, model_type: str, credential_id: str, creds: dict, name: str
    ) -> None:
        body = {
            "model": model,
            "model_type": model_type,
            "credential_id": credential_id,
            "credentials": creds,
            "name": name,
        }
        self.call("PUT", self._credentials_path(provider), body)


def sync(
    console: Console,
    provider: str,
    models: list[dict[str, Any]],
    api_key: str,
    check_mode: bool = False,
) -> list[dict[str, str]]:
    """Make Dify's credentials match `models`; return what was done per model."""
    if provider not in console.providers():
        raise DifyError(
            f"provider {provider} is not installed in this workspace: install the "
            "OpenAI-API-compatible plugin (Dify console > Plugins, or the marketplace "
            "package) first"
        )
    results = []
    for model in models:
        creds = credentials_for(model, api_key)
        name = fingerprint(creds)
        current = console.model_credential(provider, model["name"], model["type"])
        credential_id = current.get("current_credential_id")
        if credential_id and current.get("current_credential_name") == name:
            action = "unchanged"
        elif credential_id:
            action = "updated"
            if not check_mode:
                console.update_model_credential(
                    provider, model["name"], model["type"], credential_id, creds, name
                )
        else:
            action = "created"
            if not check_mode:
                console.create_model_credential(provider, model["name"], model["type"], creds, name)
        results.append({"model": model["name"], "model_type": model["type"], "action": action})
    return results


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "console_url": {"type": "str", "required": True},
            "admin_email": {"type": "str", "required": True},
            "admin_name": {"type": "str", "default": "admin"},
            "admin_password": {"type": "str", "required": True, "no_log": True},
            "provider": {"type": "str", "default": DEFAULT_PROVIDER},
            "api_key": {"type": "str", "default": "", "no_log": True},
            "models": {"type": "list", "elements": "dict", "default": []},
            "vllm_services": {"type": "list", "elements": "dict", "default": []},
            "vllm_host": {"type": "str", "default": "127.0.0.1"},
            "vllm_scheme": {"type": "str", "default": "http", "choices": ["http", "https"]},
            "service_api_keys": {"type": "dict", "default": {}, "no_log": True},
            "timeout": {"type": "int", "default": 30},
        },
        supports_check_mode=True,
    )
    params = module.params
    models = params["models"] or models_from_vllm(
        params["vllm_services"],
        params["vllm_host"],
        params["vllm_scheme"],
        params["service_api_keys"],
    )
    console = Console(params["console_url"], timeout=params["timeout"])
    try:
        if module.check_mode and console.call("GET", "/setup").get("step") != "finished":
            # Nothing to log in with before the setup: everything would be created.
            module.exit_json(changed=True, admin_created=True, models=[])
        created_admin = console.ensure_admin(
            params["admin_email"], params["admin_name"], params["admin_password"]
        )
        console.login(params["admin_email"], params["admin_password"])
        results = sync(console, params["provider"], models, params["api_key"], module.check_mode)
    except DifyError as error:
        module.fail_json(msg=str(error))
    changed = created_admin or any(r["action"] != "unchanged" for r in results)
    module.exit_json(changed=changed, admin_created=created_admin, models=results)


if __name__ == "__main__":
    main()
