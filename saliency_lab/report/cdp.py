"""Drive headless Chromium over the DevTools protocol on a pipe (`--remote-debugging-pipe`): load a report,
click elements with real mouse events, read the DOM, take screenshots, and record every network request
and console error. Standard library only; used by the report's browser tests and the docs screenshots.

The pipe protocol: Chromium reads JSON commands from fd 3 and writes JSON replies / events to fd 4, each
message terminated by a NUL byte.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from saliency_lab.errors import SaliencyLabError
from saliency_lab.report.browser import BASE_FLAGS, INSTALL_HINT, find_chromium

LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "devtools:")


def _high(fd: int) -> int:
    import fcntl

    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Page:
    """One headless Chromium with one page; use as a context manager."""

    def __init__(
        self, chromium: str | None = None, width: int = 1400, height: int = 900, timeout_s: float = 60.0
    ) -> None:
        exe = chromium or find_chromium()
        if not exe:
            raise SaliencyLabError(
                f"headless Chromium not found; {INSTALL_HINT}, or set SALIENCY_LAB_CHROMIUM"
            )
        self.timeout_s = timeout_s
        self.width, self.height = width, height
        self._profile = tempfile.TemporaryDirectory(prefix="saliency-lab-cdp-")
        # Move every pipe end above fd 4 first: dup2 onto 3 / 4 in the child must not clobber another end, and
        # dup2(fd, fd) would keep the close-on-exec flag.
        to_chrome_r, self._w = (_high(fd) for fd in os.pipe())
        self._r, from_chrome_w = (_high(fd) for fd in os.pipe())

        def _fds() -> None:  # in the child: the protocol's fixed descriptors
            os.dup2(to_chrome_r, 3)
            os.dup2(from_chrome_w, 4)

        self.proc = subprocess.Popen(
            [
                exe,
                *BASE_FLAGS,
                "--remote-debugging-pipe",
                f"--user-data-dir={self._profile.name}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=_fds,
            close_fds=False,
        )  # noqa: PLW1509 - dup2 onto fds 3/4 must happen in the child
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.session = self._attach()

    # -- protocol ---------------------------------------------------------------------------------------
    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._r, 1 << 16)
            except OSError:
                chunk = b""
            if not chunk:
                self._inbox.put(None)
                return
            buf += chunk
            while b"\0" in buf:
                msg, buf = buf.split(b"\0", 1)
                self._inbox.put(json.loads(msg))

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict:
        """Send a DevTools command (to `session` when given) and wait for its reply's result;
        SaliencyLabError on timeout or error."""
        self._next += 1
        mid = self._next
        msg: dict[str, Any] = {"id": mid, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + self.timeout_s
        while mid not in self._replies:
            try:
                got = self._inbox.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise SaliencyLabError(
                    f"headless Chromium did not answer {method} within {self.timeout_s:.0f} s"
                ) from None
            if got is None:
                raise SaliencyLabError(f"headless Chromium exited while waiting for {method}")
            if "id" in got:
                self._replies[got["id"]] = got
            else:
                self.events.append(got)
        reply = self._replies.pop(mid)
        if "error" in reply:
            raise SaliencyLabError(f"Chromium {method}: {reply['error'].get('message')}")
        return reply.get("result", {})

    def cmd(self, method: str, params: dict[str, Any] | None = None) -> dict:
        """`send` to the page's own session."""
        return self.send(method, params, self.session)

    def _attach(self) -> str:
        targets = self.send("Target.getTargets")["targetInfos"]
        page = next((t for t in targets if t["type"] == "page"), None)
        tid = (
            page["targetId"] if page else self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        )
        sid = self.send("Target.attachToTarget", {"targetId": tid, "flatten": True})["sessionId"]
        self.session = sid
        for domain in ("Page", "Runtime", "Network", "Log"):
            self.cmd(f"{domain}.enable")
        self.cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": self.width, "height": self.height, "deviceScaleFactor": 1, "mobile": False},
        )
        return sid

    # -- page actions ------------------------------------------------------------------------------------
    def open(
        self,
        path: str | Path,
        ready_js: str = "document.body && document.body.getAttribute('data-charts-done')",
        fragment: str = "",
    ) -> None:
        """Navigate to a file and wait until `ready_js` is truthy."""
        self.cmd("Page.navigate", {"url": Path(path).resolve().as_uri() + fragment})
        self.wait_for(ready_js)

    def wait_for(self, js: str, timeout_s: float | None = None) -> Any:
        """The first truthy value of the expression `js`, polled; SaliencyLabError when the timeout passes
        first."""
        deadline = time.monotonic() + (timeout_s or self.timeout_s)
        while time.monotonic() < deadline:
            try:
                got = self.eval(js)
            except SaliencyLabError:
                got = None
            if got:
                return got
            time.sleep(0.1)
        raise SaliencyLabError(f"the page never satisfied: {js}")

    def eval(self, js: str) -> Any:
        """The value of the expression `js` in the page (promises awaited); SaliencyLabError when it
        throws."""
        res = self.cmd("Runtime.evaluate", {"expression": js, "returnByValue": True, "awaitPromise": True})
        if res.get("exceptionDetails"):
            raise SaliencyLabError(f"page script failed: {res['exceptionDetails'].get('text')} in {js[:80]}")
        return res.get("result", {}).get("value")

    def click(self, selector: str) -> None:
        """Scroll the element into view and click its centre with real mouse events."""
        rect = self.eval(
            f"(function(){{var e=document.querySelector({json.dumps(selector)}); if(!e) return null;"
            "e.scrollIntoView({block:'center'}); var r=e.getBoundingClientRect();"
            "return [r.left + r.width/2, r.top + r.height/2];})()"
        )
        if not rect:
            raise SaliencyLabError(f"nothing matches {selector}")
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.cmd(
                "Input.dispatchMouseEvent",
                {"type": kind, "x": rect[0], "y": rect[1], "button": "left", "clickCount": 1},
            )

    def select(self, selector: str, value: str) -> None:
        """Choose an option of a <select> the way a user does: set it and fire 'change'."""
        self.eval(
            f"(function(){{var s=document.querySelector({json.dumps(selector)}); s.value={json.dumps(value)};"
            "s.dispatchEvent(new Event('change', {bubbles: true})); return true;})()"
        )

    def screenshot(self, out: str | Path, selector: str | None = None, height: int | None = None) -> Path:
        """PNG of the viewport scrolled to `selector` (its top at the top), `height` pixels tall."""
        params: dict[str, Any] = {"format": "png"}
        if selector:
            top = self.eval(
                f"(function(){{var e=document.querySelector({json.dumps(selector)});"
                "var r=e.getBoundingClientRect(); return r.top + window.scrollY;})()"
            )
            params["clip"] = {
                "x": 0,
                "y": float(top),
                "width": self.width,
                "height": height or self.height,
                "scale": 1,
            }
            params["captureBeyondViewport"] = True
        data = self.cmd("Page.captureScreenshot", params)["data"]
        path = Path(out)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    # -- what happened ------------------------------------------------------------------------------------
    def requests(self) -> list[str]:
        """URL of every request the page made so far."""
        return [
            e["params"]["request"]["url"]
            for e in self.events
            if e.get("method") == "Network.requestWillBeSent"
        ]

    def network_requests(self) -> list[str]:
        """Requests that would leave the machine (anything but file:, data:, blob:, about: ...)."""
        return [u for u in self.requests() if not u.startswith(LOCAL_SCHEMES)]

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and error log entries seen so far, as text."""
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", [])))
            elif m == "Runtime.exceptionThrown":
                d = p.get("exceptionDetails", {})
                out.append(str((d.get("exception") or {}).get("description") or d.get("text")))
            elif m == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def close(self) -> None:
        """Close the browser (killed when it has not exited after 10 s) and the pipe."""
        try:
            self.send("Browser.close")
        except SaliencyLabError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self._w, self._r):
            try:
                os.close(fd)
            except OSError:
                pass
        self._profile.cleanup()

    def __enter__(self) -> Page:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
