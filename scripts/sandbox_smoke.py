"""Ask the sandbox's model services one question each and print the answers.

    python scripts/sandbox_smoke.py [HOST]      (default: aiprov-sandbox-1)

For hosts started with `aiprov sandbox up --services` and bootstrapped: a chat
completion from vLLM (the tiny random Qwen2, so the words are noise), the size
of an embedding from the MiniLM service and a transcription of a sentence that
espeak-ng speaks, all through the key-checking front (the gateway role's
nginx); then, without the key, the inference routes vLLM's own key leaves
open must answer 401 at the front. Exits 1 if any answer is missing or has
the wrong shape.

First it shows what the host reaches: the sandbox bundle's package index (the
address `aiprov bundle serve` gave the inventory) must answer from inside the host, and PyPI,
Debian's archive, the Hugging Face mirror and a bare address outside must not.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from aiprov import sandbox

SENTENCE = "hello world, this is the aiprov sandbox"
# What a host of the offline network must not reach (requests, not bare
# connects: some networks accept any TCP connection).
OUTSIDE = [
    "https://pypi.org/simple/",
    "http://deb.debian.org/debian/",
    "https://hf-mirror.com/api/models",
    "http://1.1.1.1/",
]
# Run by the host's own python3: each URL's status, or why it failed.
_FETCH = """
import sys, urllib.request
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            print(url, r.status)
    except Exception as e:
        print(url, "no:", getattr(e, "reason", None) or e)
"""


def reach(name: str, urls: list[str]) -> dict[str, str]:
    """What each URL answers from inside the host."""
    done = subprocess.run(
        ["podman", "exec", name, "python3", "-c", _FETCH, *urls],
        capture_output=True, text=True, check=True, env=sandbox.podman_env(),
    )  # fmt: skip
    return dict(line.split(" ", 1) for line in done.stdout.splitlines())


def offline(name: str) -> bool:
    """The host reaches its bundle's index and nothing outside."""
    index = sandbox.bundle_overlay(sandbox.bundle_dir())["python_env_pip_index_url"]
    answers = reach(name, [index, *OUTSIDE])
    for url, answer in answers.items():
        print(f"from {name}: {url} -> {answer}")
    reached = [url for url in OUTSIDE if not answers[url].startswith("no:")]
    if answers[index] != "200" or reached:
        print(
            f"{name}: not offline as its inventory says (index {answers[index]}; reached {reached})"
        )
        return False
    return True


def post(url: str, key: str, body: bytes, content_type: str) -> dict:
    request = urllib.request.Request(
        url,
        data=body,
        headers={"Authorization": f"Bearer {key}", "Content-Type": content_type},
    )
    with urllib.request.urlopen(request, timeout=300) as response:
        return json.load(response)


def status_without_key(url: str) -> int:
    request = urllib.request.Request(url, data=b"{}", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def post_json(url: str, key: str, payload: dict) -> dict:
    return post(url, key, json.dumps(payload).encode(), "application/json")


def spoken_wav() -> bytes:
    """SENTENCE as a 16 kHz mono wav, the rate FunASR's models take."""
    with tempfile.TemporaryDirectory() as tmp:
        raw, wav = Path(tmp, "raw.wav"), Path(tmp, "speech.wav")
        subprocess.run(["espeak-ng", "-w", str(raw), SENTENCE], check=True)
        resample = ["sox", str(raw), "-r", "16000", "-c", "1", "-b", "16", str(wav)]
        subprocess.run(resample, check=True)
        return wav.read_bytes()


def multipart(fields: dict[str, str], filename: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: audio/wav\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def main(name: str) -> int:
    host = next((h for h in sandbox.status() if h.name == name), None)
    if host is None or not host.address:
        print(f"{name}: no running sandbox host of that name (aiprov sandbox status)")
        return 1
    if not offline(name):
        return 1
    key = sandbox.api_key().read_text().strip()
    base = f"http://{host.address}"
    try:
        chat = post_json(
            f"{base}:8000/v1/chat/completions",
            key,
            {"model": "tiny-chat", "max_tokens": 12,
             "messages": [{"role": "user", "content": "Say hello."}]},
        )  # fmt: skip
        print(f"chat (tiny-chat):   {chat['choices'][0]['message']['content']!r}"
              f" ({chat['usage']['completion_tokens']} tokens)")  # fmt: skip

        embedding = post_json(
            f"{base}:8001/v1/embeddings", key, {"model": "minilm", "input": SENTENCE}
        )
        size = len(embedding["data"][0]["embedding"])
        print(f"embedding (minilm): {size} dimensions")

        # "custom" is funasr-server's name for the model at --model-path.
        body, content_type = multipart({"model": "custom"}, "speech.wav", spoken_wav())
        transcription = post(f"{base}:10003/v1/audio/transcriptions", key, body, content_type)
        print(f"transcription:      {transcription['text']!r} (random-weight Paraformer)")

        # vLLM's own key guards only /v1: the front must guard the rest.
        paths = ["/invocations", "/pooling", "/score", "/rerank", "/classify", "/v1/models"]
        open_paths = [p for p in paths if status_without_key(f"{base}:8000{p}") != 401]
        print(f"without the key:    {len(paths) - len(open_paths)}/{len(paths)} paths answer 401")
        if open_paths:
            print(f"{name}: answered without the key: {', '.join(open_paths)}")
            return 1
    except (urllib.error.URLError, KeyError, IndexError, TimeoutError) as error:
        print(f"{name}: a service did not answer as expected: {error}")
        return 1
    return 0 if size == 384 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else f"{sandbox.DEFAULT_PREFIX}-1"))
