"""aiprov: provision on-prem GPU inference servers with Ansible."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aiprov")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+checkout"
