"""A stand-in for Grafana's HTTP API, for testing the monitoring role's url
mode (Molecule's vllm_service scenario runs the role against it on the test
host). It is not Grafana, which cannot run here (no Grafana in Debian, no
registry for its image): it serves the calls the role makes with the shapes
Grafana's API documents, checks the service account token on every /api call
(401 without it, as Grafana answers), stores what is posted, and counts the
writes so a test can assert that a second run wrote nothing:

- GET/POST /api/folders[/<uid>] (404 for an unknown folder; 409 for a taken uid)
- GET/PUT /api/datasources/uid/<uid>, POST /api/datasources (409 for a taken name)
- GET /api/dashboards/uid/<uid> ({"dashboard": ... with id and version,
  "meta": {"folderUid": ...}}), POST /api/dashboards/db (412 for a dashboard
  that exists unless overwrite; 400 without a folder that exists)
- GET /fake/state: everything stored, with the write counts (token too)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class FakeGrafana:
    def __init__(self, token: str, host: str = "127.0.0.1", port: int = 0):
        self.token = token
        self.folders: dict[str, dict[str, Any]] = {}
        self.datasources: dict[str, dict[str, Any]] = {}
        self.dashboards: dict[str, dict[str, Any]] = {}
        self.writes = {"folders": 0, "datasources": 0, "dashboards": 0}
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    status, answer = 400, {"message": "bad request data"}
                else:
                    with fake._lock:
                        status, answer = fake.handle(
                            method, self.path, self.headers.get("Authorization"), body
                        )
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._answer("GET")

            def do_POST(self):
                self._answer("POST")

            def do_PUT(self):
                self._answer("PUT")

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}"

    def __enter__(self) -> FakeGrafana:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, path: str, auth: str | None, body: Any):
        if path == "/api/health":
            return 200, {"database": "ok", "version": "fake"}
        if auth != f"Bearer {self.token}":
            return 401, {"message": "Unauthorized"}
        if path == "/fake/state":
            return 200, {
                "folders": self.folders,
                "datasources": self.datasources,
                "dashboards": self.dashboards,
                "writes": self.writes,
            }
        match = re.fullmatch(r"/api/folders(?:/([^/]+))?", path)
        if match:
            return self._folder(method, match.group(1), body)
        match = re.fullmatch(r"/api/datasources(?:/uid/([^/]+))?", path)
        if match:
            return self._datasource(method, match.group(1), body)
        match = re.fullmatch(r"/api/dashboards/uid/([^/]+)", path)
        if match and method == "GET":
            stored = self.dashboards.get(match.group(1))
            if not stored:
                return 404, {"message": "Dashboard not found"}
            return 200, {
                "dashboard": stored["dashboard"],
                "meta": {"folderUid": stored["folderUid"]},
            }
        if path == "/api/dashboards/db" and method == "POST":
            return self._import(body)
        return 404, {"message": "Not found"}

    def _folder(self, method: str, uid: str | None, body: Any):
        if method == "GET" and uid:
            if uid not in self.folders:
                return 404, {"message": "folder not found"}
            return 200, self.folders[uid]
        if method == "POST" and not uid:
            if not isinstance(body, dict) or not body.get("title"):
                return 400, {"message": "folder title cannot be empty"}
            if body.get("uid") in self.folders:
                return 409, {"message": "a folder with the same uid already exists"}
            self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"]}
            self.writes["folders"] += 1
            return 200, self.folders[body["uid"]]
        return 405, {"message": "method not allowed"}

    def _datasource(self, method: str, uid: str | None, body: Any):
        if method == "GET" and uid:
            if uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            return 200, self.datasources[uid]
        if method in ("POST", "PUT"):
            if not isinstance(body, dict) or not all(body.get(k) for k in ("name", "type", "url")):
                return 400, {"message": "name, type and url are required"}
            if method == "PUT" and uid not in self.datasources:
                return 404, {"message": "Data source not found"}
            if method == "POST":
                uid = body.get("uid")
                if uid in self.datasources or any(
                    d["name"] == body["name"] for d in self.datasources.values()
                ):
                    return 409, {"message": "data source with the same name already exists"}
            self.datasources[uid] = {**body, "uid": uid, "id": len(self.datasources) + 1}
            self.writes["datasources"] += 1
            return 200, {"message": "Datasource saved", "datasource": self.datasources[uid]}
        return 405, {"message": "method not allowed"}

    def _import(self, body: Any):
        if not isinstance(body, dict) or not isinstance(body.get("dashboard"), dict):
            return 400, {"message": "dashboard is required"}
        dashboard = body["dashboard"]
        uid, folder = dashboard.get("uid"), body.get("folderUid", "")
        if not uid or not dashboard.get("title"):
            return 400, {"message": "dashboard uid and title are required"}
        if folder and folder not in self.folders:
            return 400, {"message": "folder not found"}
        stored = self.dashboards.get(uid)
        if stored and not body.get("overwrite"):
            return 412, {"status": "version-mismatch", "message": "dashboard exists"}
        version = stored["dashboard"]["version"] + 1 if stored else 1
        number = stored["dashboard"]["id"] if stored else len(self.dashboards) + 1
        self.dashboards[uid] = {
            "dashboard": {**dashboard, "id": number, "version": version},
            "folderUid": folder,
            "posts": (stored["posts"] if stored else 0) + 1,
        }
        self.writes["dashboards"] += 1
        return 200, {"id": number, "uid": uid, "status": "success", "version": version}


def main() -> None:
    """Serve a fresh fake (the token from FAKE_GRAFANA_TOKEN, not argv)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    fake = FakeGrafana(os.environ["FAKE_GRAFANA_TOKEN"], host=args.host, port=args.port)
    print(fake.url, flush=True)
    fake.server.serve_forever()


if __name__ == "__main__":
    main()
