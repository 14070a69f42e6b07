"""Monitoring cost: the CPU the monitoring role's daemons take on a host that serves.

Prints figures; it is not a timed test. Target: under 1 % of the host's CPU.

On a sandbox host bootstrapped with monitoring_enabled (Prometheus, the node
exporter, Alertmanager, the blackbox exporter beside the vLLM engines and
FunASR), it reads each process's CPU time (utime + stime in /proc/PID/stat)
at the start and the end of a window, as the kernel counts it, and divides
by the window times the CPUs the host may use. The engines' share over the
same window is printed beside it. With --load, `aiprov check` drives the
services through the front, again and again until the window ends, so the
host is serving.

    python bench/monitoring_cost.py                     # aiprov-sandbox-1, 120 s
    python bench/monitoring_cost.py --window 300 --load -i INVENTORY
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time

from aiprov import sandbox

# /proc/PID/comm (15 characters at most) of the monitoring daemons.
MONITORING = ("prometheus", "prometheus-node", "prometheus-aler", "prometheus-blac")
ENGINES = ("python", "VLLM", "funasr-server", "nginx")  # vLLM names its engine processes VLLM::...


def in_host(host: str, *command: str) -> str:
    return sandbox.run_podman("exec", host, *command, check=True).stdout


def cpu_seconds(host: str) -> dict[tuple[str, str], float]:
    """(pid, comm) -> CPU seconds of every process on the host."""
    ticks = int(in_host(host, "getconf", "CLK_TCK"))
    script = (
        'for d in /proc/[0-9]*; do [ -r "$d/stat" ] && '
        'printf "%s %s\\n" "${d#/proc/}" "$(cat "$d/stat" 2>/dev/null)"; done'
    )
    found = {}
    for line in in_host(host, "sh", "-c", script).splitlines():
        pid, _, stat = line.partition(" ")
        if ")" not in stat:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[(pid, comm)] = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return found


def share(before: dict, after: dict, names: tuple[str, ...]) -> float:
    return sum(after[key] - before.get(key, 0.0) for key in after if key[1].startswith(names))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=f"{sandbox.DEFAULT_PREFIX}-1")
    parser.add_argument("--window", type=float, default=120.0, help="seconds")
    parser.add_argument("--load", action="store_true", help="run aiprov check meanwhile")
    parser.add_argument("-i", "--inventory", help="the host's inventory (for --load)")
    args = parser.parse_args()
    cpus = int(in_host(args.host, "nproc"))
    aiprov = shutil.which("aiprov") or os.path.join(os.path.dirname(sys.executable), "aiprov")
    before, started = cpu_seconds(args.host), time.monotonic()
    checks = 0
    while time.monotonic() - started < args.window:
        if not args.load:
            time.sleep(args.window - (time.monotonic() - started))
            break
        subprocess.run([aiprov, "check", "-i", args.inventory], capture_output=True, check=False)
        checks += 1
    after, took = cpu_seconds(args.host), time.monotonic() - started
    monitoring = share(before, after, MONITORING)
    engines = share(before, after, ENGINES)
    capacity = took * cpus
    load = f"aiprov check x{checks}" if checks else "none"
    print(f"host {args.host}: {cpus} CPUs, window {took:.0f} s, load: {load}")
    for label, seconds in (("monitoring daemons", monitoring), ("engines, nginx", engines)):
        print(f"{label:<20} {seconds:7.2f} CPU s  {100 * seconds / capacity:6.2f} % of the host")
    print(f"target: monitoring under 1 % -> {'met' if monitoring / capacity < 0.01 else 'MISSED'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
