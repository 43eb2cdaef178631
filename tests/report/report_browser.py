"""Open a page in headless Chromium and inspect it over the DevTools protocol (no extra packages).

Chromium is started with ``--remote-debugging-pipe``: it reads protocol messages from fd 3 and
writes to fd 4, each a JSON object terminated by a NUL byte. That needs nothing beyond the
standard library, unlike the websocket the ``--remote-debugging-port`` variant speaks.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

# Runs in the child: fds argv[1], argv[2] become 3 and 4 (inheritable), then exec Chromium.
_SHIM = (
    "import os, sys; os.dup2(int(sys.argv[1]), 3); os.dup2(int(sys.argv[2]), 4); "
    "os.close(int(sys.argv[1])); os.close(int(sys.argv[2])); os.execv(sys.argv[3], sys.argv[3:])"
)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--mute-audio",
    "--autoplay-policy=no-user-gesture-required",
    "--remote-debugging-pipe",
)


def find_chromium() -> str | None:
    """The Chromium executable (``/usr/bin/chromium`` on Debian), or None."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


@dataclass
class PageReport:
    """What the page did: its images and videos, and every error the browser reported."""

    images: list[dict]
    videos: list[dict]
    errors: list[str]
    screenshot: Path
    title: str = ""
    events: list[dict] = field(default_factory=list)


class Chromium:
    """A headless Chromium process driven over the DevTools pipe."""

    def __init__(self, executable: str, user_data_dir: Path, *, timeout: float = 60.0):
        self.timeout = timeout
        self.events: list[dict] = []
        self._next_id = 0
        self._buffer = b""
        to_browser_read, to_browser_write = os.pipe()
        from_browser_read, from_browser_write = os.pipe()
        # Chromium reads fd 3 and writes fd 4. A tiny Python shim places the pipe ends there and
        # execs Chromium (a preexec_fn would force a plain fork, which JAX warns against; dash
        # cannot redirect fds >= 10). Both ends first move to fds >= 10, so putting one on 3
        # cannot clobber the other.
        incoming = fcntl.fcntl(to_browser_read, fcntl.F_DUPFD_CLOEXEC, 10)
        outgoing = fcntl.fcntl(from_browser_write, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser_read)
        os.close(from_browser_write)
        self._log = open(Path(user_data_dir) / "chromium.log", "wb")
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-c", _SHIM, str(incoming), str(outgoing),
             executable, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log, pass_fds=(incoming, outgoing),
        )
        os.close(incoming)
        os.close(outgoing)
        self._write_fd, self._read_fd = to_browser_write, from_browser_read

    # ------------------------------------------------------------------ protocol

    def send(self, method: str, params: dict | None = None, *, session: str | None = None) -> dict:
        """Call ``method`` and return its result (events that arrive meanwhile are kept)."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._write_fd, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._receive(self.timeout)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def wait_for_event(self, method: str, *, timeout: float | None = None) -> dict:
        """The first (already received or next) event named ``method``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            for event in self.events:
                if event.get("method") == method and not event.get("_seen"):
                    event["_seen"] = True
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no {method} event within the timeout")
            self.events.append(self._receive(remaining))

    def _receive(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\0" not in self._buffer:
            remaining = deadline - time.monotonic()
            ready, _, _ = select.select([self._read_fd], [], [], max(remaining, 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._read_fd, 1 << 20)
            if not chunk:
                raise RuntimeError(f"Chromium closed the DevTools pipe (exit code {self.process.poll()})")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    # ------------------------------------------------------------------ pages

    def inspect(self, url: str, screenshot: Path) -> PageReport:
        """Load ``url``, wait for it and its media, and report images, videos and errors."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page", "Runtime", "Log"):
            self.send(f"{domain}.enable", session=session)
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": 1200, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session=session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for_event("Page.loadEventFired")
        media = self._evaluate(session, MEDIA_SCRIPT)
        title = self._evaluate(session, "document.title")
        self._screenshot(session, screenshot)
        return PageReport(media["images"], media["videos"], self._errors(), screenshot, title, list(self.events))

    def _evaluate(self, session: str, expression: str):
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True, "returnByValue": True},
                           session=session)
        if "exceptionDetails" in result:
            raise RuntimeError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    def _screenshot(self, session: str, path: Path) -> None:
        size = self.send("Page.getLayoutMetrics", session=session)["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1}
        data = self.send("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip},
                         session=session)["data"]
        path.write_bytes(base64.b64decode(data))

    def _errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (failed loads among them)."""
        errors = []
        for event in self.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.exceptionThrown":
                errors.append(f"exception: {params['exceptionDetails'].get('text')}")
            elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
                errors.append(
                    "console.error: "
                    + " ".join(str(a.get("value", a.get("description"))) for a in params.get("args", []))
                )
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"log: {entry.get('text')} {entry.get('url', '')}")
        return errors

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()  # only the process this helper started
            self.process.wait()
        for fd in (self._write_fd, self._read_fd):
            try:
                os.close(fd)
            except OSError:
                pass
        self._log.close()


# Waits (up to 10 s) until every video has its metadata or failed, then describes all media.
MEDIA_SCRIPT = """
(async () => {
  const videos = Array.from(document.querySelectorAll('video'));
  const settled = v => v.readyState >= 1 || v.error !== null;
  const start = Date.now();
  while (!videos.every(settled) && Date.now() - start < 10000) {
    await new Promise(r => setTimeout(r, 100));
  }
  await Promise.all(Array.from(document.images).map(i => i.decode().catch(() => null)));
  return {
    images: Array.from(document.images).map(i => ({src: i.getAttribute('src'), complete: i.complete,
                                                    width: i.naturalWidth, height: i.naturalHeight})),
    videos: videos.map(v => ({src: v.getAttribute('src'), readyState: v.readyState,
                              error: v.error ? v.error.code : null, width: v.videoWidth,
                              height: v.videoHeight, duration: v.duration})),
  };
})()
"""


def inspect_page(html: Path, screenshot: Path, *, executable: str, profile: Path) -> PageReport:
    """Open ``html`` from disk in a fresh headless Chromium and report what happened."""
    profile.mkdir(parents=True, exist_ok=True)
    browser = Chromium(executable, profile)
    try:
        return browser.inspect(Path(html).resolve().as_uri(), screenshot)
    finally:
        browser.close()
