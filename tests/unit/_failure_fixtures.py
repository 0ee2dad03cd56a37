"""Shared helpers of the failure tests: a real read-only folder, a folder hash, a one-line CLI call."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def tree_hash(folder: Path) -> str:
    """sha256 over every path and file content under `folder` (what "nothing written changed" means)."""
    h = hashlib.sha256()
    for p in sorted(Path(folder).rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _try(*cmd: str) -> bool:
    if shutil.which(cmd[0]) is None:
        return False
    return subprocess.run(cmd, capture_output=True).returncode == 0


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[str]:
    """Make `folder` really read-only for this process; yields how.

    Root ignores permission bits, so as root the folder is bind-mounted read-only onto itself (writes fail
    with EROFS); failing that, it is marked immutable with `chattr -R +i`. As a normal user, permission bits
    suffice. Skips when none of these is possible.
    """
    folder = Path(folder).resolve()
    if os.geteuid() != 0:
        dirs = [folder, *(p for p in folder.rglob("*") if p.is_dir())]
        modes = {d: d.stat().st_mode for d in dirs}
        for d in dirs:
            d.chmod(stat.S_IMODE(modes[d]) & ~0o222)
        try:
            yield "chmod"
        finally:
            for d in dirs:
                d.chmod(stat.S_IMODE(modes[d]))
        return
    if _try("mount", "--bind", str(folder), str(folder)):
        if _try("mount", "-o", "remount,bind,ro", str(folder)):
            try:
                yield "read-only bind mount"
            finally:
                subprocess.run(["umount", str(folder)], check=True)
            return
        subprocess.run(["umount", str(folder)], check=True)
    if _try("chattr", "-R", "+i", str(folder)):
        try:
            yield "chattr +i"
        finally:
            subprocess.run(["chattr", "-R", "-i", str(folder)], check=True)
        return
    pytest.skip("cannot make a real read-only folder here (root without mount or chattr)")


def cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run the real CLI in-process; (exit code, stdout, stderr)."""
    from saliency_lab.cli import main

    try:
        rc = main([str(a) for a in argv])
    except SystemExit as exc:  # argparse usage errors
        rc = int(exc.code or 0)
    out = capsys.readouterr()
    return rc, out.out, out.err
