"""Ansible Vault passwords: gathered once by aiprov, turned into secrets by Ansible.

The rules are ansible-playbook's: the vault ids are --vault-id (else
ANSIBLE_VAULT_IDENTITY_LIST), then --vault-password-file, then
ANSIBLE_VAULT_PASSWORD_FILE; Ansible's CLI.setup_vault_secrets reads the files
and runs the scripts. A password that is prompted for (--ask-vault-pass,
--vault-id LABEL@prompt) is read once, by aiprov, and reaches ansible-playbook
through a private file (runner.vault_args), so Ansible never asks again.

Every decrypted value is registered with problems.hide_secret: no problem
message ever shows it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from unittest import mock

from ansible import constants
from ansible.cli import CLI
from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes
from ansible.parsing.dataloader import DataLoader
from ansible.parsing.vault import (
    AnsibleVaultError,
    EncryptedString,
    VaultLib,
    VaultSecret,
    VaultSecretsContext,
    is_encrypted_file,
)

from aiprov.problems import InputError, Problem, hide_secret

_PROMPTS = ("prompt", "prompt_ask_vault_pass")
NO_PASSWORD = "encrypted with Ansible Vault; pass --vault-password-file or --ask-vault-pass"
WRONG_PASSWORD = "encrypted with Ansible Vault; the vault password given does not decrypt it"


@dataclass(frozen=True)
class VaultOptions:
    """Where the vault passwords come from; ANSIBLE_VAULT_PASSWORD_FILE is added by Ansible."""

    password_files: tuple[str, ...] = ()
    vault_ids: tuple[str, ...] = ()  # [LABEL@]FILE: a password file or script
    prompted: tuple[tuple[str, str], ...] = field(default=(), repr=False)  # (label, password)


def _config(name: str) -> Any:
    """An Ansible setting as it is now (ansible.constants keeps the value at import)."""
    return constants.config.get_config_value(name)


def prompt_text(label: str) -> str:
    """Ansible's own prompt: "Vault password", with the label unless it is the default."""
    default = _config("DEFAULT_VAULT_IDENTITY")
    return "Vault password" + ("" if label == default else f" ({label})")


def gather(
    password_files: Iterable[str],
    vault_ids: Iterable[str],
    ask_vault_pass: bool,
    ask: Callable[[str], str],
) -> VaultOptions:
    """The vault options of one command; `ask(label)` reads each prompted password once."""
    default = _config("DEFAULT_VAULT_IDENTITY")
    ids = list(vault_ids)
    setting = "--vault-id"
    if not ids and _config("DEFAULT_VAULT_IDENTITY_LIST"):
        ids, setting = list(_config("DEFAULT_VAULT_IDENTITY_LIST")), "ANSIBLE_VAULT_IDENTITY_LIST"
    labels, files = [], []
    for vault_id in ids:
        label, source = CLI.split_vault_id(vault_id)
        if source in _PROMPTS:
            labels.append(label or default)
            continue
        if not Path(source).expanduser().is_file():
            raise InputError([Problem(source, setting, "no such vault password file")])
        files.append(f"{label}@{_absolute(source)}" if label else _absolute(source))
    if ask_vault_pass or _config("DEFAULT_ASK_VAULT_PASS"):
        labels.append(default)
    prompted = []
    for label in dict.fromkeys(labels):
        password = ask(label).strip()  # Ansible strips prompted and file passwords alike
        if not password:
            raise InputError([Problem("--ask-vault-pass", label, "the vault password is empty")])
        prompted.append((label, password))
    return VaultOptions(
        password_files=tuple(_absolute(path) for path in password_files),
        vault_ids=tuple(files),
        prompted=tuple(prompted),
    )


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().absolute())


def secrets(options: VaultOptions) -> list[tuple[str, VaultSecret]]:
    """The secrets for a DataLoader, built by Ansible (files read, scripts run once)."""
    return list(_secrets(options, _config("DEFAULT_VAULT_PASSWORD_FILE")))


@cache
def _secrets(options: VaultOptions, env_file: str | None) -> tuple[tuple[str, VaultSecret], ...]:
    found: list[tuple[str, VaultSecret]] = []
    if options.password_files or options.vault_ids or env_file:
        try:
            with mock.patch.object(constants, "DEFAULT_VAULT_PASSWORD_FILE", env_file):
                found = CLI.setup_vault_secrets(
                    DataLoader(),
                    list(options.vault_ids),
                    list(options.password_files),
                    auto_prompt=False,
                    initialize_context=False,
                )
        except AnsibleError as error:
            message = " ".join(str(error.message).split())
            raise InputError([Problem("(vault password)", "(file)", message)]) from None
    found += [(label, VaultSecret(to_bytes(password))) for label, password in options.prompted]
    return tuple(found)


def activate(found: list[tuple[str, VaultSecret]]) -> None:
    """Make `found` the secrets that inline !vault values decrypt with."""
    current = VaultSecretsContext.current(optional=True)
    if current is None:
        VaultSecretsContext.initialize(VaultSecretsContext(found))
    else:  # Ansible allows one context per process; a later load replaces its secrets
        current.secrets = found


def cannot_decrypt(error: BaseException, file: str, found: list[tuple[str, VaultSecret]]) -> bool:
    """Whether Ansible failed for want of the right vault password: a decryption error
    (its cause may be wrapped), or an error about an encrypted file `found` can't open."""
    if is_encrypted(file) and not decrypts(file, found):
        return True
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, AnsibleVaultError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def decrypts(path: str, found: list[tuple[str, VaultSecret]]) -> bool:
    """Whether one of the secrets `found` opens the encrypted file at `path`."""
    try:
        VaultLib(found).decrypt(Path(path).read_bytes())
    except AnsibleError:
        return False
    return True


def failure_message(have_secrets: bool) -> str:
    return WRONG_PASSWORD if have_secrets else NO_PASSWORD


def reveal(
    name: str,
    value: Any,
    origin: Callable[[Any], str],
    have_secrets: bool,
    problems: list[Problem],
) -> Any:
    """`value` with each inline !vault value inside it decrypted (containers in place).

    A value that cannot be decrypted stays encrypted and adds a problem; every
    decrypted value, and every value from an encrypted file, is hidden from
    problem messages.
    """
    if isinstance(value, EncryptedString):
        try:
            plain = str(value)  # decrypts with the active secrets; keeps the origin tags
        except AnsibleError:
            problems.append(Problem(origin(value), name, failure_message(have_secrets)))
            return value
        hide_secret(plain)
        return plain
    if isinstance(value, dict):
        for key, item in value.items():
            value[key] = reveal(f"{name}.{key}", item, origin, have_secrets, problems)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = reveal(f"{name}[{index}]", item, origin, have_secrets, problems)
    elif _is_scalar(value) and is_encrypted(origin(value)):
        hide_secret(str(value))
    return value


def _is_scalar(value: Any) -> bool:
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def is_encrypted(path: str) -> bool:
    """Whether `path` is a file encrypted with ansible-vault."""
    if not path or not Path(path).is_file():
        return False
    return _encrypted(path, Path(path).stat().st_mtime_ns)


@cache
def _encrypted(path: str, mtime_ns: int) -> bool:
    with open(path, "rb") as handle:
        return is_encrypted_file(handle)
