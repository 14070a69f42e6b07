#!/usr/bin/env python3
"""Write aiprov's Grafana dashboards (aiprov.dashboards) as JSON files.

    python scripts/gen_dashboards.py          # writes cli/aiprov/data/dashboards/*.json
    python scripts/gen_dashboards.py --check  # exits 1 if a file is out of date

Import them in Grafana (Dashboards > New > Import) or point its file
provisioning at the directory; each asks for a Prometheus data source.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from aiprov import dashboards, paths


def rendered() -> dict[Path, str]:
    out = paths.data_dir() / "dashboards"
    return {
        out / f"{name}.json": json.dumps(build(), indent=2, sort_keys=True) + "\n"
        for name, build in dashboards.DASHBOARDS.items()
    }


def main() -> int:
    stale = []
    for path, text in rendered().items():
        if "--check" in sys.argv:
            if not path.is_file() or path.read_text() != text:
                stale.append(path.name)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    if stale:
        print(f"out of date: {', '.join(stale)} (run scripts/gen_dashboards.py)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
