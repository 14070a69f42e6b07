"""Fleet benchmark: `aiprov bootstrap` on 1, 4 and 8 sandbox hosts reached over SSH.

Prints figures; it is not a timed test. For each fleet size it starts fresh
sandbox hosts with sshd (`aiprov sandbox up --ssh`), runs the bootstrap once
(first run: packages are downloaded and installed) and then re-runs it on the
converged hosts under three settings:

  plain   no pipelining, no SSH connection reuse: each task opens an SSH
          connection and copies the module over SFTP before running it
  aiprov  what `aiprov bootstrap` sets today: pipelining (modules go through
          the SSH session's stdin) and ControlPersist (one SSH connection per
          host for the whole run); Ansible's default 5 forks; facts gathered
          by every play
  tuned   aiprov plus forks = hosts, gathering=smart (each host's facts are
          gathered once per run, not once per play) and a jsonfile fact cache
          (a re-run within an hour gathers no facts at all)

Every converged re-run must report changed=0 on every host; the script exits 1
otherwise. Results: a table on stdout, and with --out PREFIX, PREFIX.json and a
plot PREFIX.svg of time against host count.

    python bench/fleet.py                               # base only, 1/4/8 hosts
    python bench/fleet.py --tags base,nouveau --out docs/fleet-bench
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from aiprov import runner, sandbox

PREFIX = "aiprov-mol-fleet"
PROFILES = ("plain", "aiprov", "tuned")


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def set_profile(inventory_dir: Path, profile: str, hosts: int, cache_dir: Path) -> dict:
    """Rewrite the connection settings for `profile`; return the env and forks it needs."""
    hosts_file = inventory_dir / "hosts.yml"
    content = yaml.safe_load(hosts_file.read_text())
    group = content["all"]["children"]["sandbox"]["vars"]
    known_hosts = group["ansible_ssh_common_args"].split("UserKnownHostsFile=")[1].split()[0]
    if profile == "plain":
        group["ansible_ssh_pipelining"] = False
        group["ansible_ssh_args"] = "-o ControlMaster=no"
        group["ansible_ssh_common_args"] = f"-o UserKnownHostsFile={known_hosts}"
    else:
        group["ansible_ssh_pipelining"] = True
        group.pop("ansible_ssh_args", None)
        group["ansible_ssh_common_args"] = (
            f"{sandbox.SSH_COMMON_ARGS} -o UserKnownHostsFile={known_hosts}"
        )
    hosts_file.write_text("---\n" + yaml.safe_dump(content, sort_keys=False))
    if profile != "tuned":
        return {"env": {"ANSIBLE_GATHERING": "implicit"}, "forks": None}
    return {
        "env": {
            "ANSIBLE_GATHERING": "smart",
            "ANSIBLE_CACHE_PLUGIN": "jsonfile",
            "ANSIBLE_CACHE_PLUGIN_CONNECTION": str(cache_dir),
            "ANSIBLE_CACHE_PLUGIN_TIMEOUT": "3600",
        },
        "forks": max(hosts, 5),
    }


def bootstrap(inventory_dir: Path, args: argparse.Namespace, settings: dict, runs: Path) -> dict:
    """One `aiprov bootstrap` run through the same runner the CLI uses."""
    saved = {key: os.environ.get(key) for key in settings["env"]}
    os.environ.update(settings["env"])
    options = runner.RunOptions(
        inventory=str(inventory_dir),
        tags=args.tags,
        skip_tags=args.skip_tags,
        extra_vars=list(args.extra_vars),
        forks=settings["forks"],
    )
    load_before = load_average()
    started = time.monotonic()
    try:
        result = runner.run(options, run_dir=runs / f"{time.time_ns()}")
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    wall = time.monotonic() - started
    hosts = result.state.hosts.values()
    tasks = [h.ok + h.skipped + h.failed + h.unreachable for h in hosts]
    return {
        "rc": result.rc,
        "wall_s": round(wall, 1),
        "changed": sum(h.changed for h in hosts),
        "tasks_per_host": max(tasks, default=0),
        "s_per_task_host": round(wall / max(sum(tasks), 1), 3),
        "load": [load_before, load_average()],
        "failures": [f"{f.host}: {f.task}: {f.message}"[:300] for f in result.state.failures],
    }


def measure(count: int, args: argparse.Namespace, work: Path) -> dict:
    inventory_dir = work / f"inventory-{count}"
    (inventory_dir / "group_vars").mkdir(parents=True, exist_ok=True)
    (inventory_dir / "group_vars" / "sandbox.yml").write_text(
        "aiprov_gpu_family: cpu\naiprov_gpu_count: 0\n"
    )
    sandbox.down(PREFIX)
    started = time.monotonic()
    sandbox.up(count, args.os, inventory_dir, ssh=True, prefix=PREFIX)
    figures: dict = {"hosts": count, "up_s": round(time.monotonic() - started, 1)}
    cache_dir = work / f"facts-{count}"
    runs = work / "runs"
    settings = set_profile(inventory_dir, "tuned", count, cache_dir)
    figures["first"] = bootstrap(inventory_dir, args, settings, runs)
    report("first run", count, figures["first"])
    for profile in PROFILES:
        settings = set_profile(inventory_dir, profile, count, cache_dir)
        samples = [bootstrap(inventory_dir, args, settings, runs) for _ in range(args.samples)]
        for sample in samples:
            report(f"re-run {profile}", count, sample)
        best = min(samples, key=lambda s: s["wall_s"])
        best["median_wall_s"] = round(statistics.median(s["wall_s"] for s in samples), 1)
        best["changed"] = max(s["changed"] for s in samples)
        best["rc"] = max(s["rc"] for s in samples)
        figures[profile] = best
    if not args.keep:
        sandbox.down(PREFIX)
    return figures


def report(label: str, count: int, run: dict) -> None:
    print(
        f"{count:>2} host(s) {label:<15} {run['wall_s']:>7.1f} s  rc={run['rc']} "
        f"changed={run['changed']:<3} tasks/host={run['tasks_per_host']:<3} "
        f"s/task/host={run['s_per_task_host']:.3f}  "
        f"load {run['load'][0]:.1f}->{run['load'][1]:.1f}",
        flush=True,
    )
    for failure in run["failures"]:
        print(f"      {failure}", flush=True)


def summary(results: list[dict]) -> str:
    """A Markdown table: wall times, growth per extra host, cost per task per host."""
    one = next((r for r in results if r["hosts"] == 1), None)
    lines = [
        "| hosts | first run (s) | re-run plain (s) | re-run aiprov (s) | re-run tuned (s) "
        "| tuned: per extra host (s) | tuned: per extra host / 1-host re-run "
        "| tuned: s per task per host | tasks per host |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        growth = ratio = "-"
        if one and r["hosts"] > 1:
            extra = (r["tuned"]["wall_s"] - one["tuned"]["wall_s"]) / (r["hosts"] - 1)
            growth = f"{extra:.2f}"
            ratio = f"{extra / one['tuned']['wall_s']:.2f}"
        lines.append(
            f"| {r['hosts']} | {r['first']['wall_s']:.1f} | {r['plain']['wall_s']:.1f} "
            f"| {r['aiprov']['wall_s']:.1f} | {r['tuned']['wall_s']:.1f} | {growth} | {ratio} "
            f"| {r['tuned']['s_per_task_host']:.3f} | {r['tuned']['tasks_per_host']} |"
        )
    return "\n".join(lines)


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [r["hosts"] for r in results]
    figure, axes = plt.subplots(figsize=(7, 4.2))
    axes.plot(counts, [r["first"]["wall_s"] for r in results], "o-", label="first run")
    for profile in PROFILES:
        axes.plot(
            counts, [r[profile]["wall_s"] for r in results], "s--", label=f"re-run ({profile})"
        )
    axes.set_xlabel("hosts")
    axes.set_ylabel("wall time (s)")
    axes.set_xticks(counts)
    axes.set_ylim(bottom=0)
    axes.grid(alpha=0.3)
    axes.set_title(title, fontsize=10)
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, metadata={"Date": None})


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", default="1,4,8", help="Fleet sizes, comma-separated.")
    parser.add_argument("--tags", default="base", help="Roles to run (bootstrap tags).")
    parser.add_argument("--skip-tags", default=None, help="Roles or tasks to skip.")
    parser.add_argument("-e", "--extra-vars", action="append", default=[], help="As aiprov -e.")
    parser.add_argument("--os", default="debian12", choices=list(sandbox.OS_SUITES))
    parser.add_argument("--samples", type=int, default=1, help="Re-runs per setting.")
    parser.add_argument("--out", type=Path, help="Write PREFIX.json and PREFIX.svg.")
    parser.add_argument("--keep", action="store_true", help="Leave the last fleet running.")
    args = parser.parse_args()

    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"tags={args.tags} skip_tags={args.skip_tags} os={args.os}; {uptime.strip()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="aiprov-fleet-") as work:
        try:
            for count in (int(c) for c in args.hosts.split(",")):
                results.append(measure(count, args, Path(work)))
        finally:
            if not args.keep:
                sandbox.down(PREFIX)
    print()
    print(summary(results))
    not_converged = [
        f"{r['hosts']} host(s) {p}: changed={r[p]['changed']} rc={r[p]['rc']}"
        for r in results
        for p in PROFILES
        if r[p]["changed"] or r[p]["rc"]
    ]
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "tags": args.tags,
            "skip_tags": args.skip_tags,
            "os": args.os,
            "uptime": uptime.strip(),
            "cpus": os.cpu_count(),
            "results": results,
        }
        args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
        plot(
            results,
            args.out.with_suffix(".svg"),
            f"aiprov bootstrap --tags {args.tags} over SSH, {os.cpu_count()} CPU cores",
        )
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.svg')}")
    for line in not_converged:
        print(f"NOT CONVERGED: {line}", file=sys.stderr)
    return 1 if not_converged else 0


if __name__ == "__main__":
    sys.exit(main())
