"""A stand-in for Dify 1.13's console API, for testing the provider registration.

It is not Dify: it accepts exactly the request shapes Dify's source defines for
the endpoints aiprov calls, rejects everything else the way Dify does (status
codes), and records every request so tests can assert on them:

- GET/POST /console/api/setup (controllers/console/setup.py: SetupRequestPayload
  email/name<=30/password with valid_password; 201; 403 once set up)
- POST /console/api/login (controllers/console/auth/login.py: LoginPayload, the
  password base64-encoded (@decrypt_password_field); tokens only as cookies
  access_token/refresh_token/csrf_token, body {"result": "success"})
- every /workspaces/ call needs the access_token cookie and an X-CSRF-Token
  header equal to the csrf_token cookie (libs/token.py check_csrf_token)
- GET /workspaces/current/model-providers ({"data": [{"provider": ...}]})
- GET/POST/PUT /workspaces/current/model-providers/<provider>/models/credentials
  (controllers/console/workspace/models.py: ParserGetCredentials,
  ParserCreateCredential, ParserUpdateCredential; model_type a ModelType value;
  name <= 30; credential_id a UUID; POST answers 201)
- the credential form of the OpenAI-API-compatible plugin: endpoint_url always,
  context_size for llm/text-embedding/rerank, max_chunks for text-embedding.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import threading
import time
import urllib.parse
import uuid
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# core/model_runtime/entities/model_entities.py ModelType values.
MODEL_TYPES = {"llm", "text-embedding", "rerank", "speech2text", "moderation", "tts"}
OPENAI_COMPATIBLE = "langgenius/openai_api_compatible/openai_api_compatible"
_PASSWORD = re.compile(r"^(?=.*[a-zA-Z])(?=.*\d).{8,}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_REQUIRED = {
    "llm": ("endpoint_url", "context_size"),
    "text-embedding": ("endpoint_url", "context_size", "max_chunks"),
    "rerank": ("endpoint_url", "context_size"),
}


class Reject(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class FakeDify:
    def __init__(
        self,
        providers: tuple[str, ...] = (OPENAI_COMPATIBLE,),
        host: str = "127.0.0.1",
        port: int = 0,
    ):
        self.providers = list(providers)
        self.admin: dict[str, str] | None = None
        self.sessions: dict[str, str] = {}  # access token -> csrf token
        # (provider, model_type, model) -> {"id", "name", "credentials"}
        self.credentials: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.requests: list[dict[str, Any]] = []
        self.server = ThreadingHTTPServer((host, port), self._handler())
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeDify:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()

    def writes(self) -> list[dict[str, Any]]:
        return [
            r
            for r in self.requests
            if r["method"] in ("POST", "PUT", "DELETE") and r["path"] != "/login"
        ]

    # -- request handling ---------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep pytest output clean
                pass

            def _serve(self, method: str) -> None:
                parsed = urllib.parse.urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                record = {
                    "method": method,
                    "path": parsed.path.removeprefix("/console/api"),
                    "query": dict(urllib.parse.parse_qsl(parsed.query)),
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": None,
                }
                fake.requests.append(record)
                cookies: list[str] = []
                try:
                    if raw:
                        if self.headers.get("Content-Type") != "application/json":
                            raise Reject(415, "expected application/json")
                        record["body"] = json.loads(raw)
                    status, answer = fake.route(record, cookies)
                except Reject as error:
                    status, answer = error.status, {"code": "invalid_param", "message": str(error)}
                body = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for cookie in cookies:
                    self.send_header("Set-Cookie", cookie)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PUT(self) -> None:
                self._serve("PUT")

        return Handler

    def route(self, req: dict[str, Any], cookies: list[str]) -> tuple[int, Any]:
        path, method = req["path"], req["method"]
        if path == "/setup":
            return self._setup(req)
        if path == "/login" and method == "POST":
            return self._login(req, cookies)
        if path.startswith("/workspaces/"):
            self._authenticate(req)
            if path == "/workspaces/current/model-providers" and method == "GET":
                return 200, {
                    "data": [{"provider": p, "label": {"en_US": p}} for p in self.providers]
                }
            match = re.fullmatch(
                r"/workspaces/current/model-providers/(.+)/models/credentials", path
            )
            if match:
                return self._credentials(match.group(1), req)
        raise Reject(404, f"no route {method} {path}")

    def _setup(self, req: dict[str, Any]) -> tuple[int, Any]:
        if req["method"] == "GET":
            return 200, {"step": "finished" if self.admin else "not_started"}
        if self.admin:
            raise Reject(403, "Dify has been successfully installed.")
        body = _object(req["body"], required={"email", "name", "password"}, optional={"language"})
        if not _EMAIL.match(str(body["email"])):
            raise Reject(400, "invalid email")
        if not isinstance(body["name"], str) or len(body["name"]) > 30:
            raise Reject(400, "name: at most 30 characters")
        if not isinstance(body["password"], str) or not _PASSWORD.match(body["password"]):
            raise Reject(400, "Invalid password")
        self.admin = {"email": body["email"], "password": body["password"]}
        return 201, {"result": "success"}

    def _login(self, req: dict[str, Any], cookies: list[str]) -> tuple[int, Any]:
        body = _object(
            req["body"], required={"email", "password"}, optional={"remember_me", "invite_token"}
        )
        if "remember_me" in body and not isinstance(body["remember_me"], bool):
            raise Reject(400, "remember_me must be a boolean")
        try:  # libs/encryption.py FieldEncryption.decrypt_field: base64 or fail
            password = base64.b64decode(str(body["password"]), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            raise Reject(401, "Invalid encrypted data") from None
        if (
            not self.admin
            or body["email"] != self.admin["email"]
            or password != self.admin["password"]
        ):
            raise Reject(401, "Invalid email or password.")
        access, csrf = uuid.uuid4().hex, uuid.uuid4().hex
        self.sessions[access] = csrf
        cookies.append(f"access_token={access}; HttpOnly; Max-Age=3600; Path=/; SameSite=Lax")
        cookies.append(
            f"refresh_token={uuid.uuid4().hex}; HttpOnly; Max-Age=2592000; Path=/; SameSite=Lax"
        )
        cookies.append(f"csrf_token={csrf}; Max-Age=3600; Path=/; SameSite=Lax")
        return 200, {"result": "success"}

    def _authenticate(self, req: dict[str, Any]) -> None:
        jar = SimpleCookie(req["headers"].get("cookie", ""))
        access = jar["access_token"].value if "access_token" in jar else None
        if access not in self.sessions:
            raise Reject(401, "Unauthorized")
        csrf_cookie = jar["csrf_token"].value if "csrf_token" in jar else None
        csrf_header = req["headers"].get("x-csrf-token")
        if not csrf_header or csrf_header != csrf_cookie or csrf_header != self.sessions[access]:
            raise Reject(401, "CSRF token is missing or invalid.")

    def _credentials(self, provider: str, req: dict[str, Any]) -> tuple[int, Any]:
        if provider not in self.providers:
            raise Reject(400, f"Provider {provider} does not exist.")
        if req["method"] == "GET":
            query = _object(
                req["query"],
                required={"model", "model_type"},
                optional={"config_from", "credential_id"},
            )
            _model_type(query["model_type"])
            stored = self.credentials.get((provider, query["model_type"], query["model"]))
            if not stored:
                return 200, {
                    "credentials": {},
                    "current_credential_id": None,
                    "current_credential_name": None,
                    "load_balancing": {"enabled": False, "configs": []},
                    "available_credentials": [],
                }
            hidden = {
                k: ("[__HIDDEN__]" if k == "api_key" else v)
                for k, v in stored["credentials"].items()
            }
            return 200, {
                "credentials": hidden,
                "current_credential_id": stored["id"],
                "current_credential_name": stored["name"],
                "load_balancing": {"enabled": False, "configs": []},
                "available_credentials": [
                    {"credential_id": stored["id"], "credential_name": stored["name"]}
                ],
            }
        if req["method"] == "POST":
            body = _object(
                req["body"], required={"model", "model_type", "credentials"}, optional={"name"}
            )
            key = (provider, _model_type(body["model_type"]), _str(body, "model"))
            creds = _credential_form(body, key[1])
            if key in self.credentials:
                raise Reject(400, "Credential with this name already exists")
            self.credentials[key] = {
                "id": str(uuid.uuid4()),
                "name": body.get("name"),
                "credentials": creds,
            }
            return 201, {"result": "success"}
        if req["method"] == "PUT":
            body = _object(
                req["body"],
                required={"model", "model_type", "credential_id", "credentials"},
                optional={"name"},
            )
            key = (provider, _model_type(body["model_type"]), _str(body, "model"))
            try:
                uuid.UUID(str(body["credential_id"]))
            except ValueError:
                raise Reject(400, "credential_id is not a valid uuid") from None
            stored = self.credentials.get(key)
            if not stored or stored["id"] != body["credential_id"]:
                raise Reject(400, "Credential record not found.")
            stored.update(name=body.get("name"), credentials=_credential_form(body, key[1]))
            return 200, {"result": "success"}
        raise Reject(405, "method not allowed")


def _object(value: Any, required: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:
    """Pydantic-like check: a JSON object with the required keys and no unknown ones."""
    if not isinstance(value, dict):
        raise Reject(400, "expected a JSON object")
    missing = required - value.keys()
    unknown = value.keys() - required - optional
    if missing or unknown:
        raise Reject(400, f"missing {sorted(missing)}, unknown {sorted(unknown)}")
    return value


def _str(body: dict[str, Any], key: str) -> str:
    if not isinstance(body[key], str) or not body[key]:
        raise Reject(400, f"{key} must be a non-empty string")
    return body[key]


def _model_type(value: Any) -> str:
    if value not in MODEL_TYPES:
        raise Reject(400, f"invalid model type {value!r}")
    return value


def _credential_form(body: dict[str, Any], model_type: str) -> dict[str, str]:
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 30):
        raise Reject(400, "name: at most 30 characters")
    creds = body["credentials"]
    if not isinstance(creds, dict) or not all(isinstance(v, str) for v in creds.values()):
        raise Reject(400, "credentials must be an object of strings (the console's form values)")
    missing = [
        field for field in _REQUIRED.get(model_type, ("endpoint_url",)) if not creds.get(field)
    ]
    if missing:
        raise Reject(400, f"Variable {missing[0]} is required")
    return dict(creds)


def main() -> None:
    """Serve a fresh fake for a bounded time (Molecule's dify scenario runs the role against it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=600, help="exit after this long")
    args = parser.parse_args()
    with FakeDify(host=args.host, port=args.port) as fake:
        print(fake.url, flush=True)
        time.sleep(args.seconds)


if __name__ == "__main__":
    main()
