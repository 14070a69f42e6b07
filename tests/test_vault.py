"""Ansible Vault end to end: inline !vault values and encrypted vars files load,
validate and plan with a password, fail in one line without one, and the
password reaches ansible-playbook by path, never in argv, artifacts or a leftover
file. Every secret here is made up by the test and encrypted in tmp dirs."""

import os
import shutil
import stat
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from aiprov import inventory, paths, runner, vault
from aiprov.cli import main
from aiprov.problems import MASK, Problem, hide_secret

PASSWORD = "correct-horse-battery-staple"
API_KEY = "sk-aiprov-test-vault-0461"  # what the vaulted values decrypt to


def encrypt(text: str, password: str = PASSWORD, label: str | None = None) -> str:
    # Imported here: aiprov.inventory sets Ansible's settings before Ansible first loads.
    from ansible.parsing.vault import VaultLib, VaultSecret

    secrets = [(label or "default", VaultSecret(password.encode()))]
    return VaultLib(secrets).encrypt(text, vault_id=label).decode()


def inline(name: str, text: str, password: str = PASSWORD) -> str:
    """`name: !vault |` and the ciphertext, as `ansible-vault encrypt_string` writes it."""
    body = "".join(f"  {line}\n" for line in encrypt(text, password).splitlines())
    return f"{name}: !vault |\n{body}"


def invoke(args, **kwargs):
    return CliRunner().invoke(main, args, prog_name="aiprov", **kwargs)


def assert_bad_input(result, line):
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert line in result.output.splitlines(), result.output
    assert "Traceback" not in result.output
    assert API_KEY not in result.output


def a10_inventory(tmp_path: Path, name: str = "inv", inline_key: bool = True) -> Path:
    """The a10-4x example inventory (it validates) in a tmp dir, its API key an inline
    !vault value in group_vars/all.yml (the README's way), or no key at all."""
    inv = tmp_path / name
    shutil.copytree(paths.profiles_dir() / "a10-4x", inv)
    group_vars = inv / "group_vars" / "all.yml"
    lines = group_vars.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.startswith("vllm_service_api_key:")]
    if inline_key:
        kept.append(inline("vllm_service_api_key", API_KEY))
    group_vars.write_text("".join(kept))
    return inv


@pytest.fixture
def password_file(tmp_path):
    path = tmp_path / "vault-pass"
    path.write_text(PASSWORD + "\n")
    return path


@pytest.fixture
def wrong_password_file(tmp_path):
    path = tmp_path / "wrong-pass"
    path.write_text("not-the-password\n")
    return path


@pytest.fixture
def inline_inv(tmp_path):
    """The README's way: the API key as an inline !vault value in group_vars/all.yml."""
    return a10_inventory(tmp_path, "inline")


@pytest.fixture
def file_inv(tmp_path):
    """A whole group_vars file encrypted with ansible-vault."""
    inv = a10_inventory(tmp_path, "file", inline_key=False)
    (inv / "group_vars" / "a10.yml").write_text(encrypt(f"vllm_service_api_key: {API_KEY}\n"))
    return inv


def key_file(inv: Path) -> str:
    """Where the vaulted key is: the group_vars file that holds it."""
    encrypted = inv / "group_vars" / "a10.yml"
    return str(encrypted if encrypted.exists() else inv / "group_vars" / "all.yml")


@pytest.fixture(params=["inline", "file"])
def vaulted_inv(request):
    return request.getfixturevalue(f"{request.param}_inv")


# --- loading and validate -------------------------------------------------------------


def test_load_decrypts_inline_and_whole_file_values(inline_inv, file_inv, password_file):
    options = vault.VaultOptions(password_files=(str(password_file),))
    for inv in (inline_inv, file_inv):
        host = inventory.load(inv, vault_options=options).host("a10-01")
        assert host.vars["vllm_service_api_key"] == API_KEY
        assert type(host.vars["vllm_service_api_key"]).__name__ != "EncryptedString"
        assert host.origin("vllm_service_api_key", "?").startswith(key_file(inv))


def test_validate_with_a_password_file(vaulted_inv, password_file):
    result = invoke(["validate", "-i", str(vaulted_inv), "--vault-password-file", password_file])
    assert result.exit_code == 0, result.output
    assert API_KEY not in result.output


def test_validate_with_a_vault_id(vaulted_inv, password_file):
    result = invoke(["validate", "-i", str(vaulted_inv), "--vault-id", f"default@{password_file}"])
    assert result.exit_code == 0, result.output


def test_validate_with_ansible_vault_password_file(vaulted_inv, password_file, monkeypatch):
    monkeypatch.setenv("ANSIBLE_VAULT_PASSWORD_FILE", str(password_file))
    result = invoke(["validate", "-i", str(vaulted_inv)])
    assert result.exit_code == 0, result.output


def test_validate_with_ansible_vault_identity_list(vaulted_inv, password_file, monkeypatch):
    monkeypatch.setenv("ANSIBLE_VAULT_IDENTITY_LIST", f"default@{password_file}")
    result = invoke(["validate", "-i", str(vaulted_inv)])
    assert result.exit_code == 0, result.output


def test_validate_without_a_password(vaulted_inv):
    result = invoke(["validate", "-i", str(vaulted_inv)])
    key = "vllm_service_api_key" if "all.yml" in key_file(vaulted_inv) else "(file)"
    assert_bad_input(result, f"{key_file(vaulted_inv)}: {key}: {vault.NO_PASSWORD}")
    assert vault.NO_PASSWORD == (
        "encrypted with Ansible Vault; pass --vault-password-file or --ask-vault-pass"
    )


def test_validate_with_a_wrong_password(vaulted_inv, wrong_password_file):
    args = ["validate", "-i", str(vaulted_inv), "--vault-password-file", wrong_password_file]
    result = invoke(args)
    key = "vllm_service_api_key" if "all.yml" in key_file(vaulted_inv) else "(file)"
    assert_bad_input(result, f"{key_file(vaulted_inv)}: {key}: {vault.WRONG_PASSWORD}")


def test_validate_with_the_right_and_a_wrong_password(vaulted_inv, password_file, tmp_path):
    wrong = tmp_path / "other-pass"
    wrong.write_text("other\n")
    args = ["--vault-password-file", wrong, "--vault-id", f"ops@{password_file}"]
    result = invoke(["validate", "-i", str(vaulted_inv), *args])
    assert result.exit_code == 0, result.output


def test_a_missing_password_file_is_bad_input(inline_inv, tmp_path):
    result = invoke(["validate", "-i", str(inline_inv), "--vault-password-file", tmp_path / "no"])
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert "does not exist" in result.output and "Traceback" not in result.output
    result = invoke(["validate", "-i", str(inline_inv), "--vault-id", f"ops@{tmp_path}/no"])
    assert_bad_input(result, f"{tmp_path}/no: --vault-id: no such vault password file")


def test_a_problem_about_a_vaulted_value_never_shows_it(tmp_path, password_file):
    inv = a10_inventory(tmp_path)
    secret_mirror, secret_port = "sk-not-a-mirror-0462", "port-secret-0463"
    with (inv / "group_vars" / "all.yml").open("a") as handle:
        handle.write(inline("python_env_mirror", secret_mirror))
    (inv / "group_vars" / "a10.yml").write_text(
        encrypt(f"funasr_service_proxy_port: {secret_port}\n")
    )
    result = invoke(["validate", "-i", str(inv), "--vault-password-file", password_file])
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert secret_mirror not in result.output and secret_port not in result.output
    assert f"{inv}/group_vars/all.yml: python_env_mirror: " in result.output
    assert f"{inv}/group_vars/a10.yml: funasr_service_proxy_port: " in result.output
    assert result.output.count(MASK) == 2


def test_problems_mask_decrypted_values():
    hide_secret("sk-aiprov-mask-0464")
    problem = Problem("f.yml", "key", "got 'sk-aiprov-mask-0464', expected a port")
    assert str(problem) == f"f.yml: key: got '{MASK}', expected a port"


def test_nested_vaulted_values_are_decrypted(tmp_path, password_file):
    inv = a10_inventory(tmp_path)
    nested = inline("SECRET_KEY", API_KEY).replace("\n", "\n  ")
    with (inv / "host_vars" / "a10-01.yml").open("a") as handle:
        handle.write(f"dify_env:\n  {nested}\n")
    options = vault.VaultOptions(password_files=(str(password_file),))
    host = inventory.load(inv, vault_options=options).host("a10-01")
    assert host.vars["dify_env"]["SECRET_KEY"] == API_KEY
    result = invoke(["validate", "-i", str(inv)])
    assert_bad_input(
        result, f"{inv}/host_vars/a10-01.yml: dify_env.SECRET_KEY: {vault.NO_PASSWORD}"
    )


def test_an_encrypted_hosts_file(tmp_path, password_file, wrong_password_file):
    inv = a10_inventory(tmp_path)
    hosts = inv / "hosts.yml"
    hosts.write_text(encrypt(hosts.read_text()))
    result = invoke(["validate", "-i", str(inv)])
    assert_bad_input(result, f"{hosts}: (file): {vault.NO_PASSWORD}")
    result = invoke(["validate", "-i", str(inv), "--vault-password-file", wrong_password_file])
    assert_bad_input(result, f"{hosts}: (file): {vault.WRONG_PASSWORD}")
    result = invoke(["validate", "-i", str(inv), "--vault-password-file", password_file])
    assert result.exit_code == 0, result.output


def test_broken_yaml_in_an_encrypted_file_is_not_blamed_on_the_password(tmp_path, password_file):
    inv = a10_inventory(tmp_path)
    (inv / "group_vars" / "a10.yml").write_text(encrypt("a: [1\n"))
    result = invoke(["validate", "-i", str(inv), "--vault-password-file", password_file])
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert "YAML" in result.output and "Vault" not in result.output


# --- --ask-vault-pass ------------------------------------------------------------------


def test_ansible_ask_vault_pass_is_honoured(inline_inv, monkeypatch):
    monkeypatch.setenv("ANSIBLE_ASK_VAULT_PASS", "true")
    result = invoke(["validate", "-i", str(inline_inv)], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Vault password") == 1


def test_ask_vault_pass_prompts_once(vaulted_inv):
    result = invoke(["validate", "-i", str(vaulted_inv), "--ask-vault-pass"], input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Vault password") == 1
    assert PASSWORD not in result.output


def test_ask_vault_pass_with_a_wrong_password(inline_inv):
    result = invoke(["validate", "-i", str(inline_inv), "--ask-vault-pass"], input="nope\n")
    assert_bad_input(
        result, f"{key_file(inline_inv)}: vllm_service_api_key: {vault.WRONG_PASSWORD}"
    )


def test_a_labelled_prompt(tmp_path):
    inv = a10_inventory(tmp_path, inline_key=False)
    with (inv / "group_vars" / "all.yml").open("a") as handle:
        ciphertext = encrypt(API_KEY, label="prod")
        handle.write("vllm_service_api_key: !vault |\n")
        handle.write("".join(f"  {line}\n" for line in ciphertext.splitlines()))
    result = invoke(
        ["validate", "-i", str(inv), "--vault-id", "prod@prompt"], input=PASSWORD + "\n"
    )
    assert result.exit_code == 0, result.output
    assert "Vault password (prod):" in result.output


def test_a_blank_prompted_password_is_bad_input(inline_inv):
    result = invoke(["validate", "-i", str(inline_inv), "--ask-vault-pass"], input="   \n")
    assert_bad_input(result, "--ask-vault-pass: default: the vault password is empty")


# --- plan ------------------------------------------------------------------------------


def test_plan_with_vault(vaulted_inv, password_file):
    args = ["plan", "-i", str(vaulted_inv), "--format", "json"]
    result = invoke([*args, "--vault-password-file", password_file])
    assert result.exit_code == 0, result.output
    assert '"hosts"' in result.output or '"a10-01"' in result.output
    assert API_KEY not in result.output
    result = invoke(args)
    assert result.exit_code == runner.EXIT_BAD_INPUT, result.output
    assert vault.NO_PASSWORD in result.output and "Traceback" not in result.output


# --- bootstrap and models pull: what reaches ansible-playbook ---------------------------


@pytest.fixture
def fake_run(monkeypatch, tmp_path):
    """ansible-runner records its arguments, and what the vault files held during the run."""
    monkeypatch.setenv("AIPROV_RUNS_DIR", str(tmp_path / "runs"))
    calls = []

    def run(**kwargs):
        args = kwargs["cmdline"].split()
        files = [a.split("@", 1)[1] for a in args if a.startswith("default@")]
        seen = {f: (Path(f).read_text(), stat.S_IMODE(os.stat(f).st_mode)) for f in files}
        calls.append(SimpleNamespace(kwargs=kwargs, args=args, vault_files=seen))
        kwargs["event_handler"]({"event": "playbook_on_stats", "event_data": {"ok": {"a10-01": 1}}})
        return SimpleNamespace(status="successful", rc=0)

    monkeypatch.setattr(runner.ansible_runner, "run", run)
    return calls


def _all_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("command", [["bootstrap"], ["models", "pull"]], ids=" ".join)
def test_a_password_file_reaches_ansible_by_path(command, inline_inv, password_file, fake_run):
    args = [*command, "-i", str(inline_inv), "--vault-password-file", password_file]
    result = invoke(args)
    assert result.exit_code == 0, result.output
    (call,) = fake_run
    assert f"--vault-password-file {password_file}" in call.kwargs["cmdline"]
    assert PASSWORD not in call.kwargs["cmdline"] and API_KEY not in call.kwargs["cmdline"]
    assert call.kwargs["envvars"]["ANSIBLE_ASK_VAULT_PASS"] == "False"


def test_a_vault_id_reaches_ansible_by_path(inline_inv, password_file, fake_run):
    result = invoke(["bootstrap", "-i", str(inline_inv), "--vault-id", f"ops@{password_file}"])
    assert result.exit_code == 0, result.output
    assert f"--vault-id ops@{password_file}" in fake_run[0].kwargs["cmdline"]


@pytest.mark.parametrize("command", [["bootstrap"], ["models", "pull"]], ids=" ".join)
def test_ask_vault_pass_is_asked_once_and_handed_over_privately(
    command, inline_inv, fake_run, tmp_path
):
    args = [*command, "-i", str(inline_inv), "--ask-vault-pass"]
    result = invoke(args, input=PASSWORD + "\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Vault password") == 1
    (call,) = fake_run
    assert PASSWORD not in call.kwargs["cmdline"]
    assert "--ask-vault-pass" not in call.args  # Ansible must not ask again
    (path, (content, mode)), *_ = call.vault_files.items()
    assert (content, mode) == (PASSWORD, 0o600)
    assert not Path(path).exists()  # deleted after the run
    assert not Path(path).parent.exists()
    runs = tmp_path / "runs"
    assert PASSWORD not in _all_text(runs) and API_KEY not in _all_text(runs)


def test_an_encrypted_extra_vars_file_opens_or_is_refused(
    inline_inv, password_file, wrong_password_file, fake_run, tmp_path
):
    secrets = tmp_path / "secrets.yml"
    secrets.write_text(encrypt("hf_token: hf_aiprov_test_0465\n"))
    args = ["bootstrap", "-i", str(inline_inv), "-e", f"@{secrets}"]
    result = invoke([*args, "--vault-password-file", password_file])
    assert result.exit_code == 0, result.output
    assert f"-e @{secrets}" in fake_run[0].kwargs["cmdline"]  # by path, Ansible decrypts it
    result = invoke([*args, "--vault-password-file", wrong_password_file])
    assert_bad_input(result, f"{secrets}: (extra vars): {vault.WRONG_PASSWORD}")
    assert len(fake_run) == 1


def test_doctor_hands_the_vault_to_ansible(inline_inv, monkeypatch):
    import ansible_runner

    seen = {}

    def run(**kwargs):
        seen["cmdline"] = kwargs["cmdline"]
        path = kwargs["cmdline"].split("default@", 1)[1].split()[0]
        seen["password"] = Path(path).read_text()
        return SimpleNamespace(status="successful", rc=0)

    monkeypatch.setattr(ansible_runner, "run", run)
    result = invoke(["doctor", "-i", str(inline_inv), "--ask-vault-pass"], input=PASSWORD + "\n")
    assert result.exit_code == runner.EXIT_HOST_UNREACHABLE, result.output  # no host answered
    assert seen["cmdline"].startswith("--become --vault-id default@")
    assert seen["password"] == PASSWORD and PASSWORD not in seen["cmdline"]


def test_vault_options_never_show_a_password():
    options = vault.VaultOptions(prompted=(("default", PASSWORD),))
    assert PASSWORD not in repr(options)


def test_vault_args_without_any_vault_are_empty(tmp_path):
    assert runner.vault_args(vault.VaultOptions(), tmp_path) == []
    assert list(tmp_path.iterdir()) == []
