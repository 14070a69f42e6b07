"""aiprov's command line: parsing and printing only; the work is in the modules."""

from __future__ import annotations

import functools
import signal
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from aiprov import __version__, profiles, progress, runner, sandbox, vault
from aiprov.problems import InputError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def _error(message: str) -> None:
    """One line on stderr, `aiprov: message`; the message is never read as markup."""
    err_console.print(Text.assemble(("aiprov: ", "red"), message), soft_wrap=True)


def _friendly_errors(func):
    """Bad input → `FILE: KEY: message` and exit 4; never a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except InputError as error:
            progress.problems(err_console, error.problems)
            sys.exit(runner.EXIT_BAD_INPUT)
        except profiles.ProfileError as error:
            _error(str(error))
            sys.exit(runner.EXIT_BAD_INPUT)
        except BrokenPipeError:
            raise  # `aiprov plan | head`: click quiets it
        except (sandbox.SandboxError, OSError) as error:
            _error(str(error))
            sys.exit(runner.EXIT_ERROR)

    return wrapper


# click >= 8.2 raises it for a group called without a subcommand.
_NoArgsIsHelp = getattr(click.exceptions, "NoArgsIsHelpError", ())


class _Group(click.Group):
    """aiprov's exit codes for what click itself catches, for every subcommand:
    a usage error is one line and exit 4, Ctrl-C is exit 130; no traceback."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        try:
            rv = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except _NoArgsIsHelp as error:  # `aiprov models`: click prints the help
            error.show()
            sys.exit(runner.EXIT_BAD_INPUT)
        except click.UsageError as error:
            path = error.ctx.command_path if error.ctx else "aiprov"
            hint = f" (see '{path} --help')"
            err_console.print(Text(f"{path}: {error.format_message()}{hint}"), soft_wrap=True)
            sys.exit(runner.EXIT_BAD_INPUT)
        except click.ClickException as error:
            error.show()
            sys.exit(error.exit_code)
        except (click.Abort, KeyboardInterrupt):
            err_console.print("[yellow]cancelled[/] (Ctrl-C)")
            sys.exit(runner.EXIT_CANCELLED)
        sys.exit(rv if isinstance(rv, int) else runner.EXIT_OK)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="aiprov")
def main() -> None:
    """Provision on-prem GPU inference servers: driver, CUDA, mirrors, models, vLLM, FunASR.

    \b
    Example:
      aiprov init fleet --profile l20-8x
      aiprov validate -i fleet
      aiprov bootstrap -i fleet

    \b
    Exit codes, the same for every command:
      0    ok
      1    this machine could not do it (podman, a local file, Ansible itself)
      2    a host failed
      3    a host was unreachable
      4    bad input or usage: refused before anything was touched
      130  cancelled with Ctrl-C
    """


def _ansible_options(func):
    """The Ansible flags every playbook command shares."""
    options = [
        click.option(
            "-i", "--inventory", required=True, type=click.Path(),
            help="Inventory file or directory.",
        ),
        click.option("-l", "--limit", help="Run on these hosts only (Ansible pattern)."),
        click.option("-t", "--tags", help="Run only the roles/tasks with these tags."),
        click.option("--skip-tags", help="Skip the roles/tasks with these tags."),
        click.option("-C", "--check", is_flag=True, help="Show what would change; change nothing."),
        click.option("-D", "--diff", is_flag=True, help="Show the changes made to files."),
        click.option(
            "-e", "--extra-vars", multiple=True, metavar="KEY=VALUE|@FILE",
            help="Extra variables (repeatable). Inline values never reach disk or argv.",
        ),
        click.option(
            "-f", "--forks", type=click.IntRange(1, 500), help="Hosts worked on in parallel."
        ),
        click.option("-v", "--verbose", count=True, help="More Ansible output in run artifacts."),
        click.option(
            "--mitogen/--no-mitogen", default=True, show_default=True,
            help="Run tasks through Mitogen over SSH: one Python per host and run, not per task.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        func = option(func)
    return func


def _vault_options(func):
    """--vault-password-file, --ask-vault-pass and --vault-id, as one `vault_options` argument.

    Put it under _friendly_errors. A prompted password is read here, once.
    """

    @functools.wraps(func)
    def wrapper(*args, vault_password_file, ask_vault_pass, vault_id, **kwargs):
        kwargs["vault_options"] = vault.gather(
            vault_password_file, vault_id, ask_vault_pass, ask=_ask_vault_password
        )
        return func(*args, **kwargs)

    options = [
        click.option(
            "--vault-password-file", multiple=True, metavar="FILE",
            type=click.Path(exists=True, dir_okay=False),
            help="Ansible Vault password file or script (repeatable); "
            "ANSIBLE_VAULT_PASSWORD_FILE is read too.",
        ),
        click.option(
            "--ask-vault-pass", is_flag=True,
            help="Ask for the vault password (once: Ansible is not asked again).",
        ),
        click.option(
            "--vault-id", multiple=True, metavar="[LABEL@]SOURCE",
            help="Vault id: a password file, a script or 'prompt' (repeatable); "
            "default ANSIBLE_VAULT_IDENTITY_LIST.",
        ),
    ]  # fmt: skip
    for option in reversed(options):
        wrapper = option(wrapper)
    return wrapper


def _ask_vault_password(label: str) -> str:
    return click.prompt(vault.prompt_text(label), hide_input=True, err=True)


def _run_playbook(playbook: str, title: str, **opts) -> None:
    options = runner.RunOptions(
        inventory=opts["inventory"], playbook=playbook, limit=opts["limit"], tags=opts["tags"],
        skip_tags=opts["skip_tags"], check=opts["check"], diff=opts["diff"],
        extra_vars=list(opts["extra_vars"]), forks=opts["forks"], verbosity=opts["verbose"],
        mitogen=opts["mitogen"], vault=opts["vault_options"],
    )  # fmt: skip
    interrupted = {"flag": False}

    def on_sigint(signum, frame):
        interrupted["flag"] = True

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        with progress.LiveProgress(console, title) as live:
            result = runner.run(
                options, on_event=live.update, cancelled=lambda: interrupted["flag"]
            )
    finally:
        signal.signal(signal.SIGINT, previous)
    progress.recap(console, result)
    if result.rc == runner.EXIT_CANCELLED:
        err_console.print("[yellow]cancelled[/]: Ansible was stopped; re-run to finish.")
    elif not result.state.stats_seen and result.rc != 0:
        err_console.print(runner.stdout_tail(result), markup=False, soft_wrap=True)
    sys.exit(result.rc)


@main.command()
@_ansible_options
@_friendly_errors
@_vault_options
def bootstrap(**opts) -> None:
    """Bring hosts from bare OS to serving models (playbooks/bootstrap.yml).

    \b
    Example:
      aiprov bootstrap -i inventories/sandbox
      aiprov bootstrap -i fleet --limit gpu01 --tags docker --check --diff
    """
    _run_playbook("bootstrap", "bootstrap", **opts)


@main.group("models")
def models_group() -> None:
    """The model catalog: downloads from Hugging Face (mirrors) or ModelScope.

    \b
    Example:
      aiprov models pull -i fleet
    """


@models_group.command("pull")
@_ansible_options
@_friendly_errors
@_vault_options
def models_pull(**opts) -> None:
    """Fetch the catalog models each host needs: verified, resumable, once per fleet.

    Runs playbooks/models.yml (the models role alone). A host whose models are
    complete is not contacted on the network again and reports no change.

    \b
    Example:
      aiprov models pull -i fleet
      aiprov models pull -i fleet --limit gpu02,cache01
    """
    _run_playbook("models", "models pull", **opts)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.argument("hosts", nargs=-1)
@click.option(
    "--profile",
    required=True,
    help="Built-in layout (with --discover: whose models to plan): " + ", ".join(profiles.names()),
)
@click.option(
    "--discover",
    is_flag=True,
    help="Ask HOSTS (read-only: doctor's probe) and write each in its GPU family with its GPUs "
    "as found and a checked plan of the profile's models.",
)
@click.option(
    "--hosts-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --discover: more hosts, one [user@]host[:port] per line (# comments).",
)
@click.option(
    "--connection",
    default="ssh",
    show_default=True,
    help="With --discover: how Ansible reaches the hosts (local: this machine).",
)
@click.option("--force", is_flag=True, help="Overwrite files in a non-empty DIRECTORY.")
@_friendly_errors
def init(
    directory: Path,
    hosts: tuple[str, ...],
    profile: str,
    discover: bool,
    hosts_file: Path | None,
    connection: str,
    force: bool,
) -> None:
    """Write a ready inventory for a built-in layout into DIRECTORY, or, with
    --discover, one for the HOSTS as they are.

    --discover runs doctor's read-only probe on each host ([user@]host[:port],
    as for ssh), puts it in the group of its GPU family with its GPU count,
    memory and NVSwitches as found, and plans the profile's models on its GPUs
    with validate's own rules. A host without an NVIDIA GPU, with a model no
    family lists or with mixed models is named and left out (exit 2); one that
    cannot be asked exits 3. The written inventory is validated.

    \b
    Example:
      aiprov init fleet --profile a10-4x
      aiprov init fleet --discover --profile l20-8x root@10.0.0.11 root@10.0.0.12
      aiprov init fleet --discover --profile l20-8x --hosts-file gpu-hosts.txt
      aiprov init here --discover --profile qwen3-32b-2x --connection local localhost
    """
    if not discover:
        if hosts or hosts_file or connection != "ssh":
            raise profiles.ProfileError("hosts (and --connection) are for --discover only")
        written = profiles.init(directory, profile, force=force)
        for path in written:
            console.print(f"wrote {path}")
        console.print(f"next: edit {directory}/hosts.yml, then `aiprov validate -i {directory}`")
        return
    from aiprov import discover as discovering

    targets = discovering.targets(list(hosts), hosts_file)
    with err_console.status(f"asking {len(targets)} host(s)…"):
        result = discovering.discover(directory, targets, profile, connection, force=force)
    progress.discovered(console, result)
    sys.exit(result.exit_code)


@main.command("validate")
@click.option(
    "-i", "--inventory", required=True, type=click.Path(), help="Inventory file or directory."
)
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
@_friendly_errors
@_vault_options
def validate_command(inventory: str, strict: bool, vault_options: vault.VaultOptions) -> None:
    """Check every aiprov variable in an inventory; never contacts a host.

    Prints each problem as FILE: KEY: message and exits 4; exits 0 when clean.

    \b
    Example:
      aiprov validate -i inventories/l20-8x
    """
    from aiprov import inventory as inventory_module
    from aiprov import validate

    loaded = inventory_module.load(inventory, vault_options=vault_options)
    found = validate.validate(loaded)
    progress.problems(err_console, found)
    if validate.errors(found, strict):
        sys.exit(runner.EXIT_BAD_INPUT)
    console.print(f"[green]ok[/]: {len(loaded.hosts)} host(s), no errors in {inventory}")


def _output_file(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    """-o must name a file in a directory that exists: checked before any work."""
    if value is None:
        return None
    if value.is_dir():
        raise click.BadParameter(f"{value} is a directory, not a file")
    if not value.parent.is_dir():
        raise click.BadParameter(f"no such directory: {value.parent}")
    return value


@main.command("plan")
@click.option(
    "-i", "--inventory", required=True, type=click.Path(), help="Inventory file or directory."
)
@click.option("--host", help="Plan this host only.")
@click.option(
    "--format", "fmt", type=click.Choice(["table", "json", "svg"]), default="table",
    show_default=True, help="Terminal table and bars, JSON data, or an SVG picture.",
)  # fmt: skip
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), callback=_output_file,
    help="Write to FILE instead of stdout.",
)  # fmt: skip
@click.option(
    "--models-dir", multiple=True, type=click.Path(path_type=Path),
    help="Where model files are (DIR/<id>/config.json); else the built-in catalog. Repeatable.",
)  # fmt: skip
@_friendly_errors
@_vault_options
def plan_command(
    inventory: str,
    host: str | None,
    fmt: str,
    output: Path | None,
    models_dir: tuple[Path, ...],
    vault_options: vault.VaultOptions,
) -> None:
    """Show what each vLLM service takes on each GPU: weights, KV cache, free memory.

    Exits 4 when a GPU is over-subscribed or a service's weights don't fit its share.
    The formulas are in docs/plan.md.

    \b
    Example:
      aiprov plan -i inventories/l20-8x
      aiprov plan -i fleet --host gpu01 --format svg -o gpu01.svg
    """
    import json

    from aiprov import checks_values, plan, plan_svg, schema
    from aiprov import inventory as inventory_module
    from aiprov.problems import Problem

    loaded = inventory_module.load(inventory, vault_options=vault_options)
    if host and host not in {h.name for h in loaded.hosts}:
        raise InputError([Problem(inventory, "--host", f"the inventory has no host '{host}'")])
    found_schema = set(schema.check_schema(loaded))
    found_schema |= set(checks_values.check_non_finite(loaded))  # NaN would crash the plan
    if any(p.severity == "error" for p in found_schema):
        raise InputError(sorted(found_schema))
    plans = plan.plan(loaded, inventory, host, models_dir)
    if fmt == "table":
        if output:
            with output.open("w") as handle:
                progress.plan(Console(file=handle, width=120, no_color=True), plans)
        else:
            progress.plan(console, plans)
    else:
        text = (
            json.dumps(plan.to_json(plans), indent=2) + "\n"
            if fmt == "json"
            else plan_svg.render(plans)
        )
        if output:
            output.write_text(text)
        else:
            click.echo(text, nl=False)
    if output:
        err_console.print(f"wrote {output}")
    found = sorted({p for host_plan in plans for p in host_plan.problems})
    progress.problems(err_console, found)
    if any(p.severity == "error" for p in found):
        sys.exit(runner.EXIT_BAD_INPUT)


@main.command("doctor")
@click.option(
    "-i", "--inventory", required=True, type=click.Path(), help="Inventory file or directory."
)
@click.option("-l", "--limit", help="Ask these hosts only (Ansible pattern).")
@click.option("--json", "as_json", is_flag=True, help="Print the documented JSON document.")
@_friendly_errors
@_vault_options
def doctor_command(
    inventory: str, limit: str | None, as_json: bool, vault_options: vault.VaultOptions
) -> None:
    """Show each host's OS, kernel, Secure Boot, nouveau, driver, GPUs, NVSwitches and
    CUDA toolkit, and what is missing against the inventory. Changes nothing.

    Exits 0 when every host matches, 2 when something is missing, 3 when a host
    could not be asked, 4 on bad input. A host whose aiprov_gpu_family is cpu
    expects no driver, GPU or CUDA toolkit. The JSON schema is in docs/gpu.md.

    \b
    Example:
      aiprov doctor -i inventories/l20-8x
      aiprov doctor -i fleet --limit gpu01 --json
    """
    import json

    from aiprov import doctor

    with err_console.status("asking the hosts…"):
        reports = doctor.doctor(inventory, limit, vault_options)
    if as_json:
        click.echo(json.dumps(doctor.to_json(reports), indent=2))
    else:
        progress.doctor(console, reports)
        for note in filter(None, map(doctor.cpu_note, reports)):
            console.print(Text(note), soft_wrap=True)
    sys.exit(doctor.exit_code(reports))


def _validated(inventory: str, vault_options: vault.VaultOptions):
    """The inventory, loaded and checked by every rule: bad input exits 4
    (FILE: KEY: message) before any host is touched."""
    from aiprov import inventory as inventory_module
    from aiprov import validate

    loaded = inventory_module.load(inventory, vault_options=vault_options)
    found = validate.validate(loaded)
    if validate.errors(found):
        raise InputError(validate.errors(found))
    return loaded


@main.command("status")
@click.option(
    "-i", "--inventory", required=True, type=click.Path(), help="Inventory file or directory."
)
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@_friendly_errors
@_vault_options
def status_command(inventory: str, as_json: bool, vault_options: vault.VaultOptions) -> None:
    """One row per planned vLLM service: up or down, model, requests running and
    waiting, KV-cache use, p50/p95 latency, GPU memory against the plan.

    Reads each engine's /metrics through the key-checking front (the key goes in
    a header, never on a command line). Latency is over the requests since the
    previous `aiprov status` (within 10 minutes), else since the engine started.
    Exits 2 when a planned service is down, 4 on bad input.

    \b
    Example:
      aiprov status -i inventories/sandbox
      aiprov status -i fleet --json
    """
    import json

    from aiprov import status, templating

    loaded = _validated(inventory, vault_options)
    found = status.fleet_endpoints(loaded, templating.rendered, inventory)
    readings = status.collect(found)
    if as_json:
        click.echo(json.dumps(status.to_json(found, readings), indent=2))
    else:
        progress.status(console, found, readings)
    sys.exit(status.exit_code(readings))


@main.command("check")
@click.option(
    "-i", "--inventory", required=True, type=click.Path(), help="Inventory file or directory."
)
@click.option("--service", help="Check the services of this name only.")
@click.option(
    "-o", "--output", type=click.Path(path_type=Path, file_okay=False),
    help="Directory for report.json, report.svg and the load generator's files "
    "(default: a new one in aiprov's runs directory).",
)  # fmt: skip
@_friendly_errors
@_vault_options
def check_command(
    inventory: str, service: str | None, output: Path | None, vault_options: vault.VaultOptions
) -> None:
    """Post-deploy acceptance: drive each vLLM service through the front with AIPerf
    at the load its `slo:` names, and judge TTFT p95, latency, tokens/s, error rate.

    Prints a table, writes report.json and report.svg; exits 2 when a target is
    missed or a service cannot be driven, 4 on bad input. The key reaches the load
    generator through its environment only.

    \b
    Example:
      aiprov check -i inventories/sandbox
      aiprov check -i fleet --service chat -o acceptance/
    """
    from aiprov import check, templating
    from aiprov.problems import Problem

    loaded = _validated(inventory, vault_options)
    found = check.targets(loaded, templating.rendered, service)
    if not found:
        what = f"no vLLM service named '{service}'" if service else "no vLLM service"
        raise InputError([Problem(inventory, "--service" if service else "hosts", what)])
    directory = output or check.run_dir()
    results = []
    for endpoint, entry, tokenizer in found:
        with err_console.status(f"driving {endpoint.host} {endpoint.service}…"):
            results.append(check.check_one(endpoint, entry, tokenizer, directory))
    report, plot = check.write_report(results, directory)
    progress.check(console, results)
    console.print(f"report: {report}\nplot:   {plot}")
    sys.exit(check.exit_code(results))


@main.group("sandbox")
def sandbox_group() -> None:
    """Local sandbox hosts (podman containers with systemd) to try aiprov without GPUs.

    \b
    Example:
      aiprov sandbox up --hosts 2 && aiprov bootstrap -i inventories/sandbox
    """


@sandbox_group.command("up")
@click.option("--hosts", "count", default=1, show_default=True, type=click.IntRange(1, 32))
@click.option(
    "--os",
    "os_name",
    default="debian12",
    show_default=True,
    type=click.Choice(list(sandbox.OS_SUITES)),
)
@click.option(
    "--inventory", "inventory_dir", default="inventories/sandbox", show_default=True,
    type=click.Path(path_type=Path), help="Where to write hosts.yml for the sandbox hosts.",
)  # fmt: skip
@click.option(
    "--ssh", is_flag=True,
    help="Run sshd in the hosts and reach them over SSH (pipelining, ControlPersist), "
    "as real fleets are reached; the key stays in aiprov's state dir.",
)  # fmt: skip
@click.option(
    "--services", is_flag=True,
    help="Also run the model services' CPU profile (vLLM chat and embedding, FunASR), "
    "the hosts on a network that reaches only an offline bundle's servers: the "
    "sandbox's own (bash scripts/sandbox-mirror.sh up) or --bundle's.",
)  # fmt: skip
@click.option(
    "--bundle", type=click.Path(path_type=Path, file_okay=False),
    help="With --services: this offline bundle's servers (aiprov bundle serve DIR) "
    "instead of the sandbox's own bundle.",
)  # fmt: skip
@_friendly_errors
def sandbox_up(
    count: int, os_name: str, inventory_dir: Path, ssh: bool, services: bool, bundle: Path | None
) -> None:
    """Start sandbox hosts (building the image on first use) and write their inventory.

    \b
    Examples:
      aiprov sandbox up --hosts 2 --os debian13
      aiprov sandbox up --hosts 8 --ssh
      bash scripts/sandbox-mirror.sh up && aiprov sandbox up --services
      aiprov bundle serve B && aiprov sandbox up --services --bundle B
    """
    with console.status(f"starting {count} {os_name} host(s)…"):
        hosts = sandbox.up(count, os_name, inventory_dir, ssh=ssh, services=services, bundle=bundle)
    _print_hosts(hosts)
    console.print(f"inventory: {inventory_dir / 'hosts.yml'}")


@sandbox_group.command("down")
@_friendly_errors
def sandbox_down() -> None:
    """Remove all sandbox hosts.

    \b
    Example:
      aiprov sandbox down
    """
    removed = sandbox.down()
    console.print(
        f"removed {len(removed)} host(s)" + (f": {', '.join(removed)}" if removed else "")
    )


@sandbox_group.command("status")
@_friendly_errors
def sandbox_status() -> None:
    """List sandbox hosts.

    \b
    Example:
      aiprov sandbox status
    """
    _print_hosts(sandbox.status())


def _print_hosts(hosts: list[sandbox.SandboxHost]) -> None:
    table = Table("host", "state", "address", "image")
    for host in hosts:
        table.add_row(host.name, host.state, host.address, host.image)
    console.print(table)


@main.group("bundle")
def bundle_group() -> None:
    """Offline bundles: everything a fleet needs, built where the internet is,
    checked and served where it is not.

    \b
    Example:
      aiprov bundle build -i fleet -o /media/bundle
      aiprov bundle verify /media/bundle -i fleet && aiprov bundle serve /media/bundle
    """


@bundle_group.command("verify")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "-i", "--inventory", type=click.Path(),
    help="Also refuse the bundle for a host whose aiprov_os or aiprov_arch differs from it.",
)  # fmt: skip
@_friendly_errors
@_vault_options
def bundle_verify(
    directory: Path, inventory: str | None, vault_options: vault.VaultOptions
) -> None:
    """Check every file of a bundle against its manifest (size and sha256), and the
    bundle's OS release against the hosts'. Prints FILE: what: message and exits 4
    on a missing or altered file or another release, before any host changes.

    \b
    Example:
      aiprov bundle verify /media/bundle -i fleet
    """
    from aiprov import bundle
    from aiprov import inventory as inventory_module

    manifest = _bundle_manifest(directory)
    with err_console.status(f"checking {len(manifest.items)} files…"):
        found = list(bundle.verify(directory, manifest))
    if inventory:
        loaded = inventory_module.load(inventory, vault_options=vault_options)
        hosts = [
            (
                host.origin("aiprov_os", inventory),
                host.name,
                str(host.vars.get("aiprov_os", "")),
                str(host.vars.get("aiprov_arch", "")),
            )
            for host in loaded.hosts
        ]
        found += bundle.check_targets(directory, manifest, hosts)
    if found:
        raise InputError(found)
    target = manifest.target
    console.print(
        f"{directory}: {len(manifest.items)} files, {_gib(manifest.size())} intact"
        f" ({target.os}, Python {target.python}, {target.arch})"
    )


def _bundle_manifest(directory: Path):
    from aiprov import bundle
    from aiprov.problems import Problem

    try:
        return bundle.load(directory)
    except bundle.BundleError as error:
        raise InputError(
            [Problem(str(directory / bundle.MANIFEST), "manifest", str(error))]
        ) from None


def _gib(size: int) -> str:
    return f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"


@bundle_group.command("build")
@click.option(
    "-i", "--inventory", required=True, type=click.Path(), help="Inventory file or directory."
)
@click.option(
    "-o", "--output", "directory", required=True,
    type=click.Path(path_type=Path, file_okay=False), help="The bundle's directory.",
)  # fmt: skip
@click.option("--os", "os_name", default="", help="OS release of the hosts (default: aiprov_os).")
@click.option("--arch", default="", help="Architecture of the hosts (default: aiprov_arch).")
@click.option("--hf-endpoint", default="", help="Hub to fetch from (default: models_hf_endpoint).")
@click.option(
    "--modelscope-endpoint", default="", help="Default: the hosts' models_modelscope_endpoint."
)
@click.option(
    "--only", "parts", multiple=True, type=click.Choice(["wheels", "apt", "models", "images"]),
    help="Build only these parts (repeatable).",
)  # fmt: skip
@click.option(
    "--dry-run", is_flag=True, help="Resolve everything and print the size; download nothing."
)
@_friendly_errors
@_vault_options
def bundle_build(
    inventory: str, directory: Path, os_name: str, arch: str, hf_endpoint: str,
    modelscope_endpoint: str, parts: tuple[str, ...], dry_run: bool,
    vault_options: vault.VaultOptions,
) -> None:  # fmt: skip
    """On a connected machine: download everything the inventory's hosts need
    (locked wheels, distribution packages with their dependencies as a local
    repository, catalog models, stack images) for their OS release, Python and
    architecture, with a manifest of every file. A re-run fetches only what is
    missing.

    \b
    Examples:
      aiprov bundle build -i fleet -o /media/bundle
      aiprov bundle build -i inventories/l20-8x -o /tmp/b --dry-run
    """
    import time

    from aiprov import bundle, bundle_build, bundle_plan
    from aiprov.problems import Problem

    loaded = _validated(inventory, vault_options)
    try:
        plan = bundle_plan.plan(loaded, os_name, arch)
    except bundle_plan.PlanError as error:
        raise InputError([Problem(inventory, "aiprov_os", str(error))]) from None
    endpoints = bundle_build.endpoints_for(loaded.hosts, hf_endpoint, modelscope_endpoint)
    target = plan.target
    console.print(
        f"bundle for {target.os} ({plan.suite}), Python {target.python}, {target.arch}:"
        f" {len(plan.locks)} locks, {len(plan.packages)} packages,"
        f" {len(plan.models)} models, {len(plan.images)} images"
    )

    def say(line: str) -> None:
        console.print(Text(line, style="dim"), soft_wrap=True)

    started = time.monotonic()
    try:
        if dry_run:
            found = bundle_build.estimate(plan, endpoints, say)
            table = Table("part", "files", "size")
            for part, size in found.sizes.items():
                table.add_row(part, str(found.counts.get(part, "")), _gib(size))
            table.add_row("total", "", _gib(sum(found.sizes.values())))
            console.print(table)
            notes = found.notes
        else:
            manifest, notes = bundle_build.build(
                directory, plan, endpoints, say, parts or bundle.PARTS
            )
            table = Table("part", "files", "size")
            for part in bundle.PARTS:
                if manifest.part(part):
                    table.add_row(part, str(len(manifest.part(part))), _gib(manifest.size(part)))
            table.add_row("total", str(len(manifest.items)), _gib(manifest.size()))
            console.print(table)
            console.print(f"manifest: {directory / bundle.MANIFEST}")
    except bundle.BundleError as error:
        _error(str(error))
        sys.exit(runner.EXIT_ERROR)
    for note in notes:
        console.print(Text("note: " + note, style="yellow"), soft_wrap=True)
    console.print(f"took {time.monotonic() - started:.0f} s")


@bundle_group.command("serve")
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--address", default="",
    help="Address of this machine the hosts reach (default: the gateway of the sandbox's "
    "offline network, which reaches nothing else).",
)  # fmt: skip
@click.option(
    "--port", default=8780, show_default=True, type=click.IntRange(1024, 65000),
    help="First port: the index on it, then the hub, the APT repository, the image registry.",
)  # fmt: skip
@click.option("--stop", "stop_servers", is_flag=True, help="Stop the servers of DIRECTORY.")
@_friendly_errors
def bundle_serve(directory: Path, address: str, port: int, stop_servers: bool) -> None:
    """Serve a bundle to hosts that reach nothing else: a package index
    (pypiserver), a Hugging Face-compatible hub (Olah), the APT repository over
    HTTP, an image registry (docker-registry) holding the bundle's images; writes
    the overlay that points every role at them (-e @FILE).

    \b
    Examples:
      aiprov bundle serve /media/bundle --address 10.0.0.5
      aiprov bootstrap -i fleet -e @/media/bundle/.serve/overlay.yml
      aiprov bundle serve /media/bundle --stop
    """
    from aiprov import bundle, bundle_serve

    if stop_servers:
        stopped = bundle_serve.stop(directory)
        console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}")
        return
    manifest = _bundle_manifest(directory)
    address = address or sandbox.ensure_offline_network()
    try:
        with console.status(f"starting the bundle's servers on {address}…"):
            served, overlay, notes = bundle_serve.serve(directory, manifest, address, port)
    except bundle.BundleError as error:
        _error(str(error))
        sys.exit(runner.EXIT_ERROR)
    table = Table("server", "url", "pid", "")
    for server in served:
        table.add_row(server.what, server.url, str(server.pid), server.detail)
    console.print(table)
    console.print(f"overlay: {overlay} (aiprov bootstrap -i INVENTORY -e @{overlay})")
    for note in notes:
        console.print(Text("note: " + note, style="yellow"), soft_wrap=True)
