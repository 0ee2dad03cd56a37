"""Open a report in headless Chromium with the network blocked and say whether every chart rendered.

Used by the tests and by `saliency-lab report --check`. The page itself records errors (console.error,
uncaught exceptions, failed chart embeds, blocked loads) in #report-errors and writes
data-charts-done="ok/total" on <body> once every chart settled; this module reads those back from the DOM
that Chromium dumps after a virtual-time budget.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from saliency_lab.errors import SaliencyLabError

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
INSTALL_HINT = "install it with `apt-get update && apt-get install -y chromium` (Debian/Ubuntu)"

# Flags that keep a headless run self-contained: no GPU, no first-run work, no background traffic, and any
# network request sent to a dead proxy / unresolvable host so a stray load fails instead of succeeding.
BASE_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-default-apps", "--disable-extensions", "--mute-audio", "--hide-scrollbars",
    "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND",
)


def find_chromium() -> str | None:
    """Path of a Chromium binary ($SALIENCY_LAB_CHROMIUM first, then PATH), None when there is none."""
    env = os.environ.get("SALIENCY_LAB_CHROMIUM")
    if env and Path(env).exists():
        return env
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass
class BrowserCheck:
    """What rendering the report in headless Chromium showed: charts drawn, console errors, DOM."""

    charts_total: int
    charts_ok: int
    rendered: dict[str, bool]  # chart id -> an <svg> or <canvas> is inside its container
    errors: list[str]
    charts_done: str | None  # the page's own data-charts-done marker, None when it never finished
    dom: str = field(repr=False, default="")
    screenshot: Path | None = None

    @property
    def ok(self) -> bool:
        """True when every chart rendered, the page finished all of them and logged no error."""
        return (not self.errors and self.charts_done == f"{self.charts_total}/{self.charts_total}"
                and all(self.rendered.values()))


def _chart_blocks(dom: str) -> dict[str, str]:
    """Map chart container id -> the markup inside it (up to the next container or </figure>)."""
    out: dict[str, str] = {}
    starts = [(m.start(), m.group(1)) for m in re.finditer(r'<div[^>]*\bdata-chart="([^"]+)"', dom)]
    for i, (pos, cid) in enumerate(starts):
        end = starts[i + 1][0] if i + 1 < len(starts) else len(dom)
        fig_end = dom.find("</figure>", pos)
        if 0 <= fig_end < end:
            end = fig_end
        out[cid] = dom[pos:end]
    return out


def check_report(html_path: str | Path, screenshot: str | Path | None = None, budget_ms: int = 20000,
                 timeout_s: float = 120.0, chromium: str | None = None) -> BrowserCheck:
    """Load `html_path` from a file URL in headless Chromium and report what rendered."""
    exe = chromium or find_chromium()
    if not exe:
        raise SaliencyLabError(f"headless Chromium not found; {INSTALL_HINT}, or set SALIENCY_LAB_CHROMIUM")
    url = Path(html_path).resolve().as_uri()
    with tempfile.TemporaryDirectory(prefix="saliency-lab-chromium-") as profile:
        flags = [exe, *BASE_FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}"]
        dom = _run([*flags, "--dump-dom", url], timeout_s)
        shot = None
        if screenshot is not None:
            shot = Path(screenshot).resolve()
            shot.parent.mkdir(parents=True, exist_ok=True)
            _run([*flags, f"--screenshot={shot}", "--window-size=1400,4000", url], timeout_s)
            if not shot.is_file():
                shot = None
    blocks = _chart_blocks(dom)
    rendered = {cid: ("<svg" in body or "<canvas" in body) and 'data-rendered="1"' in body
                for cid, body in blocks.items()}
    m = re.search(r'<pre id="report-errors"[^>]*>(.*?)</pre>', dom, re.S)
    errors = [line for line in (m.group(1).splitlines() if m else []) if line.strip()]
    done = re.search(r'<body[^>]*\bdata-charts-done="([^"]*)"', dom)
    return BrowserCheck(charts_total=len(blocks), charts_ok=sum(rendered.values()), rendered=rendered,
                        errors=errors, charts_done=done.group(1) if done else None, dom=dom, screenshot=shot)


def _run(cmd: list[str], timeout_s: float) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise SaliencyLabError(f"headless Chromium did not finish within {timeout_s:.0f} s ({cmd[0]})") from exc
    if proc.returncode != 0 and not proc.stdout:
        tail = (proc.stderr or "").strip().splitlines()[-3:]
        raise SaliencyLabError(f"headless Chromium failed (exit {proc.returncode}): {' | '.join(tail)}")
    return proc.stdout
