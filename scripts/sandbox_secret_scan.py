"""Search a bootstrapped sandbox host and aiprov's run artifacts for the secrets.

    HF_TOKEN=... python scripts/sandbox_secret_scan.py [HOST]   (default: aiprov-sandbox-1)

The secrets: the services' API key (the sandbox key file) and the hub token in
HF_TOKEN, which the models role reads from the environment. The places: unit
files, the process lists of the host and of this machine, the host's journal,
/var/log and Ansible's remote temp dir, and every run's artifacts under
aiprov's runs directory. Prints the hits per place; exits 1 on any hit, or
when the key is not where it should be (/etc/aiprov/vllm-api-key.env, 0600):
then the search would prove nothing.
"""

from __future__ import annotations

import os
import subprocess
import sys

from aiprov import runner, sandbox


def in_host(host: str, *command: str, stdin: str | None = None) -> str:
    return sandbox.run_podman("exec", "-i", host, *command, check=False, stdin=stdin).stdout


def files_with(host: str, paths: list[str], secrets: dict[str, str]) -> str:
    """The host's files under `paths` holding a secret (the secrets go in on stdin, not argv)."""
    patterns = "\n".join(secrets.values()) + "\n"
    return in_host(host, "grep", "-rlF", "-f", "-", *paths, stdin=patterns)


def search(host: str, secrets: dict[str, str]) -> dict[str, list[str]]:
    """Per place, the names of the secrets found there (files: the files' names)."""
    texts = {
        "unit properties (ExecStart, Environment)": in_host(
            host, "systemctl", "show", "*", "--property=ExecStart,Environment"
        ),
        "processes on the host": in_host(host, "ps", "-eww", "-o", "args"),
        "processes on this machine": subprocess.run(
            ["ps", "-eww", "-o", "args"], capture_output=True, text=True, check=False
        ).stdout,
        "the host's journal": in_host(host, "journalctl", "--no-pager", "-o", "cat"),
    }
    found = {
        place: [name for name, value in secrets.items() if value in text]
        for place, text in texts.items()
    }
    found["unit files"] = files_with(
        host, ["/etc/systemd", "/run/systemd", "/usr/lib/systemd"], secrets
    ).split()
    found["/var/log, /root/.ansible"] = files_with(
        host, ["/var/log", "/root/.ansible"], secrets
    ).split()
    runs = runner.runs_dir()
    found[f"run artifacts ({runs})"] = [
        str(path)
        for path in runs.rglob("*")
        if path.is_file() and any(v in path.read_text(errors="replace") for v in secrets.values())
    ]
    return found


def main(host: str) -> int:
    secrets = {
        "API key": sandbox.api_key().read_text().strip(),
        "scrape key": sandbox.scrape_key().read_text().strip(),
    }
    if os.environ.get("HF_TOKEN"):
        secrets["hub token"] = os.environ["HF_TOKEN"]
    # The control: the key did reach the host, in the one file meant for it.
    deployed = in_host(host, "cat", "/etc/aiprov/vllm-api-key.env")
    if secrets["API key"] not in deployed:
        print(f"{host}: the API key is not in /etc/aiprov/vllm-api-key.env: nothing to search for")
        return 1
    hits = 0
    for place, found in search(host, secrets).items():
        hits += len(found)
        print(f"{place:<50} {'FOUND: ' + ', '.join(found) if found else 'clean'}")
    print(f"secret hygiene ({', '.join(secrets)}): {hits} hit(s)")
    return 1 if hits else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else f"{sandbox.DEFAULT_PREFIX}-1"))
