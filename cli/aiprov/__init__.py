"""aiprov: provision on-prem GPU inference servers with Ansible."""

import warnings
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("aiprov")
except PackageNotFoundError:  # running from a checkout without installing
    __version__ = "0.0.0+checkout"

# ansible-core imports cryptography's DSA for its SSH agent support, and that
# import warns on every aiprov command; aiprov uses neither.
warnings.filterwarnings("ignore", message="DSA is deprecated", module="ansible")
