"""Fleet benchmark: `aiprov bootstrap` on 1, 4 and 8 sandbox hosts reached over SSH.

Prints figures; it is not a timed test. For each fleet size it starts fresh
sandbox hosts with sshd (`aiprov sandbox up --ssh`), runs the bootstrap once
(first run, with aiprov's default settings, `mitogen` below: packages are
downloaded and installed) and then re-runs it on the converged hosts under
five settings:

  plain   no pipelining, no SSH connection reuse: each task opens an SSH
          connection and copies the module over SFTP before running it
  piped   pipelining (modules go through the SSH session's stdin) and
          ControlPersist (one SSH connection per host for the whole run);
          Ansible's default 5 forks; facts gathered again by every play
  smart   piped plus forks = hosts and gathering=smart: each host's facts are
          gathered once per run, not once per play
  cached  smart plus a jsonfile fact cache: a re-run within the cache's hour
          gathers no facts at all (stale facts after a reboot or a kernel
          update are the price, so aiprov does not turn it on by itself)
  mitogen smart plus Mitogen's strategy (aiprov's default): one Python
          interpreter per host for the whole run, not one per task

Every converged re-run must report changed=0 on every host; the script exits 1
otherwise. Results: a table on stdout, and with --out PREFIX, PREFIX.json and a
plot PREFIX.svg of time against host count.

    python bench/fleet.py --out docs/fleet-bench        # 1/4/8 hosts, all CPU roles
    python bench/fleet.py --hosts 1,2 --tags base
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from aiprov import runner, sandbox

PREFIX = "aiprov-mol-fleet"
# The slow baseline last: on a busy machine the others are what matters.
PROFILES = ("piped", "smart", "cached", "mitogen", "plain")


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
    if profile in ("plain", "piped"):
        return {"env": {"ANSIBLE_GATHERING": "implicit"}, "forks": None, "mitogen": False}
    env = {"ANSIBLE_GATHERING": "smart", "ANSIBLE_CACHE_PLUGIN": "memory"}
    if profile == "cached":
        env.update(
            ANSIBLE_CACHE_PLUGIN="jsonfile",
            ANSIBLE_CACHE_PLUGIN_CONNECTION=str(cache_dir),
            ANSIBLE_CACHE_PLUGIN_TIMEOUT="3600",
        )
    return {"env": env, "forks": max(hosts, 5), "mitogen": profile == "mitogen"}


def controller_cpu() -> float:
    """CPU seconds of this process's finished children: ansible-playbook and its ssh
    clients, the controller's side of a run. The hosts' module runs are not in it
    (they run under podman's conmon), nor are ssh master connections still open."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def hosts_cpu(names: list[str]) -> float:
    """CPU seconds the sandbox hosts have used (their cgroups: the modules,
    sshd, systemd), read from cgroup v1's cpuacct or v2's cpu.stat."""
    total = 0.0
    for name in names:
        path = sandbox.run_podman(
            "inspect", "--format", "{{.State.CgroupPath}}", name
        ).stdout.strip()
        v1 = Path("/sys/fs/cgroup/cpuacct") / path.lstrip("/") / "cpuacct.usage"
        v2 = Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.stat"
        if v1.exists():
            total += int(v1.read_text()) / 1e9
        elif v2.exists():
            usage = dict(line.split() for line in v2.read_text().splitlines())
            total += int(usage["usage_usec"]) / 1e6
    return total


def own_cpu() -> float:
    """CPU seconds of this process: ansible-runner's side, which reads every
    event ansible-playbook emits."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def bootstrap(inventory_dir: Path, args: argparse.Namespace, settings: dict, runs: Path) -> dict:
    """One `aiprov bootstrap` run through the same runner the CLI uses.

    The profile's settings go over the runner's own environment (which takes
    precedence over this process's).
    """
    environment = runner._environment
    runner._environment = lambda: {**environment(), **settings["env"]}
    options = runner.RunOptions(
        inventory=str(inventory_dir),
        tags=args.tags,
        skip_tags=args.skip_tags,
        extra_vars=list(args.extra_vars),
        forks=settings["forks"],
        mitogen=settings["mitogen"],
    )
    names = [h.name for h in sandbox.status(PREFIX)]
    load_before = load_average()
    hosts_before = hosts_cpu(names)  # its podman calls are not the controller's
    cpu_before, own_before = controller_cpu(), own_cpu()
    started = time.monotonic()
    try:
        result = runner.run(options, run_dir=runs / f"{time.time_ns()}")
    finally:
        runner._environment = environment
    wall = time.monotonic() - started
    cpu = controller_cpu() - cpu_before
    hosts = result.state.hosts.values()
    tasks = [h.ok + h.skipped + h.failed + h.unreachable for h in hosts]
    return {
        "rc": result.rc,
        "wall_s": round(wall, 1),
        "changed": sum(h.changed for h in hosts),
        "tasks_per_host": max(tasks, default=0),
        "s_per_task_host": round(wall / max(sum(tasks), 1), 3),
        "controller_cpu_s": round(cpu, 1),
        "runner_cpu_s": round(own_cpu() - own_before, 1),
        "hosts_cpu_s": round(hosts_cpu(names) - hosts_before, 1),
        "load": [load_before, load_average()],
        "failures": [f"{f.host}: {f.task}: {f.message}"[:300] for f in result.state.failures],
    }


def measure(count: int, args: argparse.Namespace, work: Path, done: list[dict]) -> dict:
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
    settings = set_profile(inventory_dir, "mitogen", count, cache_dir)
    figures["first"] = bootstrap(inventory_dir, args, settings, runs)
    report("first run", count, figures["first"])
    save_partial(args, [*done, figures])
    for profile in args.settings:
        settings = set_profile(inventory_dir, profile, count, cache_dir)
        samples = [bootstrap(inventory_dir, args, settings, runs) for _ in range(args.samples)]
        for sample in samples:
            report(f"re-run {profile}", count, sample)
        best = min(samples, key=lambda s: s["wall_s"])
        best["median_wall_s"] = round(statistics.median(s["wall_s"] for s in samples), 1)
        best["changed"] = max(s["changed"] for s in samples)
        best["rc"] = max(s["rc"] for s in samples)
        figures[profile] = best
        save_partial(args, [*done, figures])
    if not args.keep:
        sandbox.down(PREFIX)
    return figures


def save_partial(args: argparse.Namespace, results: list[dict]) -> None:
    """What is measured so far, for a run that does not get to the end."""
    if args.out:
        args.out.with_suffix(".partial.json").write_text(json.dumps(results, indent=2) + "\n")


def report(label: str, count: int, run: dict) -> None:
    print(
        f"{count:>2} host(s) {label:<15} {run['wall_s']:>7.1f} s  rc={run['rc']} "
        f"changed={run['changed']:<3} tasks/host={run['tasks_per_host']:<3} "
        f"s/task/host={run['s_per_task_host']:.3f}  "
        f"CPU: controller {run.get('controller_cpu_s', 0):.1f} s, "
        f"runner {run.get('runner_cpu_s', 0):.1f} s, hosts {run.get('hosts_cpu_s', 0):.1f} s  "
        f"load {run['load'][0]:.1f}->{run['load'][1]:.1f}",
        flush=True,
    )
    for failure in run["failures"]:
        print(f"      {failure}", flush=True)


_COLUMNS = ("plain", "piped", "smart", "cached", "mitogen")


def summary(results: list[dict]) -> str:
    """A Markdown table: wall times (the median of the samples), the growth per
    extra host, and where the CPU of a re-run went, for aiprov's default
    setting (mitogen) or, in runs without it, smart."""
    one = next((r for r in results if r["hosts"] == 1), None)
    main = "mitogen" if all("mitogen" in r for r in results) else "smart"
    lines = [
        "| hosts | first run (s) | "
        + " | ".join(f"re-run {p} (s)" for p in _COLUMNS)
        + f" | {main}: per extra host (s) | {main}: per extra host / 1-host "
        f"| tasks per host | {main} CPU: controller / runner / hosts (s) |",
        "|---:|---:|" + "---:|" * len(_COLUMNS) + "---:|---:|---:|---:|",
    ]
    for r in results:
        growth = ratio = "-"
        if one and r["hosts"] > 1:
            extra = (median(r[main]) - median(one[main])) / (r["hosts"] - 1)
            growth = f"{extra:.2f}"
            ratio = f"{extra / median(one[main]):.2f}"
        walls = " | ".join(f"{median(r[p]):.1f}" if p in r else "-" for p in _COLUMNS)
        cpu = " / ".join(
            str(r[main].get(k, "-")) for k in ("controller_cpu_s", "runner_cpu_s", "hosts_cpu_s")
        )
        lines.append(
            f"| {r['hosts']} | {r['first']['wall_s']:.1f} | {walls} | {growth} | {ratio} "
            f"| {r[main]['tasks_per_host']} | {cpu} |"
        )
    return "\n".join(lines)


def median(run: dict) -> float:
    return run.get("median_wall_s", run["wall_s"])


def plot(results: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = [r["hosts"] for r in results]
    figure, axes = plt.subplots(figsize=(7, 4.2))
    axes.plot(counts, [r["first"]["wall_s"] for r in results], "o-", label="first run")
    for profile in (p for p in PROFILES if all(p in r for r in results)):
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
    parser.add_argument("--tags", default=None, help="Roles to run (default: all).")
    parser.add_argument(
        "--skip-tags",
        default="nvidia_driver,cuda_toolkit,docker",
        help="Roles to skip (default: the GPU driver and CUDA, which need a GPU host, and "
        "Docker, whose daemon needs a privileged host).",
    )
    parser.add_argument("-e", "--extra-vars", action="append", default=[], help="As aiprov -e.")
    parser.add_argument("--os", default="debian12", choices=list(sandbox.OS_SUITES))
    parser.add_argument("--samples", type=int, default=1, help="Re-runs per setting.")
    parser.add_argument(
        "--settings",
        type=lambda text: [p for p in text.split(",") if p in PROFILES] or parser.error(text),
        default=list(PROFILES),
        help=f"Re-run settings to measure, comma-separated (default: {','.join(PROFILES)}).",
    )
    parser.add_argument("--out", type=Path, help="Write PREFIX.json and PREFIX.svg.")
    parser.add_argument("--keep", action="store_true", help="Leave the last fleet running.")
    args = parser.parse_args()

    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout
    print(f"tags={args.tags} skip_tags={args.skip_tags} os={args.os}; {uptime.strip()}")
    results = []
    with tempfile.TemporaryDirectory(prefix="aiprov-fleet-") as work:
        try:
            for count in (int(c) for c in args.hosts.split(",")):
                results.append(measure(count, args, Path(work), results))
        finally:
            if not args.keep:
                sandbox.down(PREFIX)
    print()
    print(summary(results))
    not_converged = [
        f"{r['hosts']} host(s) {p}: changed={r[p]['changed']} rc={r[p]['rc']}"
        for r in results
        for p in args.settings
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
        what = f"tags {args.tags}" if args.tags else f"all but {args.skip_tags}"
        plot(
            results,
            args.out.with_suffix(".svg"),
            f"aiprov bootstrap over SSH ({what}), {os.cpu_count()} CPU cores",
        )
        print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.svg')}")
    for line in not_converged:
        print(f"NOT CONVERGED: {line}", file=sys.stderr)
    return 1 if not_converged else 0


if __name__ == "__main__":
    sys.exit(main())
