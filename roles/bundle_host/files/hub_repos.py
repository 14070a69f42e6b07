#!/usr/bin/env python3
"""Git repositories for Olah (offline) made from an offline bundle's models.

One home for both servers of a bundle's models: the bundle_host role runs
this script on its host, and `aiprov bundle serve` loads it (as `aiprov
bundle build` loads the models role's helper), so both build the same
repositories.

Built with git's plumbing, so no file is copied: blobs for small files, LFS
pointers plus LFS objects hard-linked to the bundle's files for large ones
(the repositories must be on the bundle's filesystem). The branch is the
catalog's revision (main or master), so the hosts' catalog needs no change.
A repository already made from the same commit of the model is left as it is.

    hub_repos.py [--check] BUNDLE_DIR REPOS_DIR
        prints {"repos": [{"repo": ORG/NAME, "revision": BRANCH}, ...],
        "built": [ORG/NAME, ...]} as JSON (--check: what it would build,
        nothing written); exit 1 with the reason on stderr.

Standard library and the git command only (it runs with the host's python3).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

MARKER = ".aiprov-model.json"
# Files above this size are LFS objects in the hub's repositories, as on real hubs.
LFS_MIN_BYTES = 1 << 20
_GIT_ENV = {
    "GIT_AUTHOR_NAME": "aiprov bundle",
    "GIT_AUTHOR_EMAIL": "aiprov@localhost",
    "GIT_COMMITTER_NAME": "aiprov bundle",
    "GIT_COMMITTER_EMAIL": "aiprov@localhost",
    "GIT_AUTHOR_DATE": "2020-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2020-01-01T00:00:00Z",
}


class HubError(Exception):
    pass


def _git(repo: Path, *args: str, stdin: str | None = None) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        env=os.environ | _GIT_ENV,
    )
    if done.returncode:
        raise HubError(f"git {args[0]} in {repo}: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def model_dirs(bundle: Path) -> list[Path]:
    """The bundle's model directories (each holds the models role's marker)."""
    return sorted(path.parent for path in (bundle / "models").glob(f"*/{MARKER}"))


def hub_repository(model_dir: Path, repos: Path, write: bool = True) -> tuple[str, bool]:
    """The repository Olah serves for one bundled model: (ORG/NAME, whether it was
    built now, or with write=False would be)."""
    marker = json.loads((model_dir / MARKER).read_text())
    identity = marker["identity"]
    name, branch = identity["repo"], identity["revision"]
    repo = repos / "models" / name
    stamp = repo / ".git" / "aiprov-source-commit"
    if stamp.exists() and stamp.read_text() == marker["commit"]:
        return name, False
    if not write:
        return name, True
    repo.mkdir(parents=True, exist_ok=True)
    _git(repo, "init", "-q", "-b", branch)
    index = repo / ".git" / "index"
    index.unlink(missing_ok=True)
    for record in marker["files"]:
        source = model_dir / record["path"]
        if record["size"] > LFS_MIN_BYTES:
            oid = record["sha256"]
            obj = repo / ".git" / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
            obj.parent.mkdir(parents=True, exist_ok=True)
            if not obj.exists():
                os.link(source, obj)
            pointer = (
                "version https://git-lfs.github.com/spec/v1\n"
                f"oid sha256:{oid}\nsize {record['size']}\n"
            )
            blob = _git(repo, "hash-object", "-w", "--stdin", stdin=pointer)
        else:
            blob = _git(repo, "hash-object", "-w", str(source))
        _git(
            repo,
            "update-index",
            "--add",
            "--cacheinfo",
            f"100644,{blob},{record['path']}",
        )
    tree = _git(repo, "write-tree")
    commit = _git(repo, "commit-tree", tree, "-m", f"aiprov bundle: {name} at {marker['commit']}")
    _git(repo, "update-ref", f"refs/heads/{branch}", commit)
    _git(repo, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    stamp.write_text(marker["commit"])
    return name, True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Olah's git repositories of a bundle's models")
    parser.add_argument(
        "--check", action="store_true", help="say what would be built; write nothing"
    )
    parser.add_argument("bundle", type=Path, help="the bundle's directory")
    parser.add_argument("repos", type=Path, help="where the repositories go")
    args = parser.parse_args(argv)
    bundle, repos = args.bundle, args.repos
    served, built = [], []
    try:
        for model in model_dirs(bundle):
            name, made = hub_repository(model, repos, write=not args.check)
            revision = json.loads((model / MARKER).read_text())["identity"]["revision"]
            served.append({"repo": name, "revision": revision})
            if made:
                built.append(name)
    except (HubError, OSError, KeyError, ValueError) as error:
        print(f"hub_repos.py: {error}", file=sys.stderr)
        return 1
    print(json.dumps({"repos": served, "built": built}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
