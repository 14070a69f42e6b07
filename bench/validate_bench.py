"""Validate benchmark: how fast `aiprov validate` refuses hostile files and checks a real one.

Prints figures; it is not a timed test (tests/test_yaml_guard.py holds the
limits). Each case runs `aiprov validate -i INV` in a fresh process, as a user
would, --runs times; the table shows the median wall time, the peak memory
(max RSS of the process) and the exit code:

  bomb-1k     a 1 KB host_vars file of nested YAML aliases ("billion laughs":
              10^9 strings once expanded); target: refused in well under 2 s
  file-50m    a 50 MB host_vars file; target: refused or handled within 10 s
              and 1 GB
  file-limit  a host_vars file just under aiprov's size limit
              (yaml_guard.MAX_FILE_BYTES): what the largest accepted file costs
  l20-8x      inventories/l20-8x, the full L20 stack; target: < 1.5 s
  startup     `aiprov --version`: the interpreter and import cost in every case

    python bench/validate_bench.py            # 3 runs each
    python bench/validate_bench.py --runs 5
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "cli"))

from aiprov import yaml_guard  # noqa: E402

HOSTS = "all:\n  hosts:\n    gpu01:\n"


def bomb() -> str:
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 10):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append("base_extra_packages: *a9")
    return "\n".join(lines) + "\n"


def catalog(size: int) -> str:
    """A models_catalog in block style, as people write it, of about `size` bytes."""
    out = ["models_catalog:"]
    total, index = 0, 0
    while True:
        entry = (
            f"  - id: model-{index}\n    hub: huggingface\n"
            f"    repo: example-org/model-{index}\n    revision: main\n"
        )
        if total + len(entry) > size:
            break
        out.append(entry.rstrip("\n"))
        total += len(entry)
        index += 1
    return "\n".join(out) + "\n"


def make(tmp: Path, name: str, host_vars: str | None = None, size: int | None = None) -> Path:
    inv = tmp / name
    (inv / "host_vars").mkdir(parents=True)
    (inv / "hosts.yml").write_text(HOSTS)
    target = inv / "host_vars" / "gpu01.yml"
    if host_vars is not None:
        target.write_text(host_vars)
    else:  # a real 50 MB file (not sparse): the limit must not depend on reading it
        chunk = catalog(1024 * 1024).encode()
        with target.open("wb") as handle:
            written = 0
            while written < size:
                handle.write(chunk[len("models_catalog:\n") :] if written else chunk)
                written += len(chunk)
    return inv


def run(argv: list[str]) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak RSS in MB and exit code of one process."""
    started = time.perf_counter()
    # The examples read the API key from the environment, as the README shows.
    env = {"AIPROV_VLLM_API_KEY": "bench-key-0123456789", **os.environ}
    proc = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT, env=env
    )
    _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - started
    cpu = usage.ru_utime + usage.ru_stime
    return took, cpu, usage.ru_maxrss / 1024, os.waitstatus_to_exitcode(status)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    aiprov = shutil.which("aiprov") or str(Path(sys.executable).parent / "aiprov")
    tmp = Path(tempfile.mkdtemp(prefix="aiprov-validate-bench-"))
    try:
        limit = make(tmp, "limit", catalog(yaml_guard.MAX_FILE_BYTES - 1024))
        cases = {
            "startup": [aiprov, "--version"],
            "bomb-1k": [aiprov, "validate", "-i", str(make(tmp, "bomb", bomb()))],
            "file-50m": [aiprov, "validate", "-i", str(make(tmp, "big", size=50 * 10**6))],
            "file-limit": [aiprov, "validate", "-i", str(limit)],
            "l20-8x": [aiprov, "validate", "-i", str(ROOT / "inventories" / "l20-8x")],
        }
        sizes = {
            "bomb-1k": (tmp / "bomb/host_vars/gpu01.yml").stat().st_size,
            "file-50m": (tmp / "big/host_vars/gpu01.yml").stat().st_size,
            "file-limit": (tmp / "limit/host_vars/gpu01.yml").stat().st_size,
        }
        print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        print(
            f"{'case':<11} {'file':>10} {'median s':>9} {'max s':>7} {'cpu s':>6} "
            f"{'peak MB':>8} {'exit':>5}"
        )
        for name, argv in cases.items():
            results = [run(argv) for _ in range(args.runs)]
            walls = [r[0] for r in results]
            cpu = statistics.median(r[1] for r in results)
            peak = max(r[2] for r in results)
            codes = sorted({r[3] for r in results})
            size = sizes.get(name)
            shown = "" if size is None else f"{size / 1e3:.1f} KB"
            print(
                f"{name:<11} {shown:>10} {statistics.median(walls):>9.2f} "
                f"{max(walls):>7.2f} {cpu:>6.2f} {peak:>8.0f} {','.join(map(str, codes)):>5}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
