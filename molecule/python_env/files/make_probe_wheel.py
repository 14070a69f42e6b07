"""Write a tiny wheel that exists only on the test mirror.

If pip or uv on the test host can install it, the request went through the
mirror: no public index has a package of this name.
Usage: make_probe_wheel.py DIR
"""

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

NAME, VERSION = "aiprov_mirror_probe", "1.0"
DIST = f"{NAME}-{VERSION}.dist-info"
FILES = {
    f"{NAME}/__init__.py": 'SERVED_BY = "aiprov test mirror"\n',
    f"{DIST}/METADATA": (
        f"Metadata-Version: 2.1\nName: aiprov-mirror-probe\nVersion: {VERSION}\n"
        "Summary: aiprov test-mirror probe\n"
    ),
    f"{DIST}/WHEEL": (
        "Wheel-Version: 1.0\nGenerator: aiprov\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    ),
}


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def main() -> None:
    out = Path(sys.argv[1]) / f"{NAME}-{VERSION}-py3-none-any.whl"
    record = [_record_line(path, text.encode()) for path, text in FILES.items()]
    record.append(f"{DIST}/RECORD,,")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as wheel:
        for path, text in FILES.items():
            wheel.writestr(path, text)
        wheel.writestr(f"{DIST}/RECORD", "\n".join(record) + "\n")
    print(out)


if __name__ == "__main__":
    main()
