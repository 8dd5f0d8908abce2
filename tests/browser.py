"""A real headless Chromium for the tests of report.html, driven over the DevTools protocol
(its websocket, through tornado's client, which Dask already brings): open a page, evaluate
JavaScript in it, click, and collect what its console and network saw.

`install()` installs Debian's chromium where it is missing and apt-get runs as root (CI), and
otherwise says why there is no browser, so the tests skip with that reason.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from typing import List, Optional

from tests.apt import apt_install

PACKAGES = ("chromium",)
NAMES = ("chromium", "chromium-browser", "google-chrome")
# headless, and nothing of its own on the network: no first-run, sync, component or QUIC traffic
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0")


def executable() -> Optional[str]:
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def install() -> Optional[str]:
    """Install chromium if it is missing; the reason it cannot be, or None."""
    return apt_install(PACKAGES, lambda: "" if executable() else "chromium")


class Browser:
    """One headless Chromium and its first tab. Use as a context manager."""

    def __init__(self, timeout: float = 60):
        self.timeout = timeout
        self.profile = tempfile.mkdtemp(prefix="screen-chromium-")
        self.loop = asyncio.new_event_loop()
        self.proc = None
        self.ws = None
        self.next_id = 0
        self.events: List[dict] = []

    def __enter__(self) -> "Browser":
        # its log to a file, not a pipe: a pipe nobody reads would fill up and stop the browser
        self.log = os.path.join(self.profile, "chromium.log")
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([executable(), *FLAGS, f"--user-data-dir={self.profile}", "about:blank"],
                                         stdout=subprocess.DEVNULL, stderr=log)
        port = self._devtools_port()
        deadline = time.time() + self.timeout
        while True:  # the first tab shows up in the target list shortly after the browser listens
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages or time.time() > deadline:
                break
            time.sleep(0.1)
        if not pages:
            raise RuntimeError("chromium opened no tab")
        self.ws = self._run(self._connect(pages[0]["webSocketDebuggerUrl"]))
        for domain in ("Page", "Runtime", "Log", "Network"):
            self.call(f"{domain}.enable")
        return self

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.loop.close()
        shutil.rmtree(self.profile, ignore_errors=True)

    # -- what a test uses ------------------------------------------------------------------------
    def open(self, url: str) -> None:
        """Load the page and wait for its load event."""
        self.events.clear()
        self.call("Page.navigate", url=url)
        self._run(self._until(lambda m: m.get("method") == "Page.loadEventFired"))

    def eval(self, expression: str):
        """The value of a JavaScript expression in the page; a JavaScript error raises."""
        answer = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        if "exceptionDetails" in answer:
            raise RuntimeError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    def console_errors(self) -> List[str]:
        """Errors the page met since it was opened: uncaught exceptions, console.error, and the
        browser's own log errors (a resource that failed to load, a blocked request)."""
        self.eval("0")  # a round trip: every event sent before it has arrived
        out = []
        for m in self.events:
            method, p = m.get("method"), m.get("params", {})
            if method == "Runtime.exceptionThrown":
                out.append(json.dumps(p["exceptionDetails"])[:500])
            elif method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append(" ".join(str(a.get("value", a.get("description"))) for a in p.get("args", [])))
            elif method == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(p["entry"].get("text", ""))
        return out

    def requests(self) -> List[str]:
        """URLs the page asked for since it was opened."""
        self.eval("0")
        return [m["params"]["request"]["url"] for m in self.events if m.get("method") == "Network.requestWillBeSent"]

    def call(self, method: str, **params) -> dict:
        self.next_id += 1
        key = self.next_id
        self.ws.write_message(json.dumps({"id": key, "method": method, "params": params}))
        answer = self._run(self._until(lambda m: m.get("id") == key))
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    # -- plumbing --------------------------------------------------------------------------------
    def _devtools_port(self) -> int:
        deadline = time.time() + self.timeout
        text = ""
        while time.time() < deadline and self.proc.poll() is None:
            with open(self.log) as f:
                text = f.read()
            m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", text)
            if m:
                return int(m.group(1))
            time.sleep(0.1)
        raise RuntimeError("chromium did not start: " + " | ".join(text.strip().splitlines()[-5:]))

    def _run(self, coroutine):
        return self.loop.run_until_complete(asyncio.wait_for(coroutine, self.timeout))

    async def _connect(self, url: str):
        from tornado.websocket import websocket_connect

        return await websocket_connect(url, max_message_size=64 << 20)

    async def _until(self, wanted) -> dict:
        """Read messages, keeping events, until one that `wanted` accepts."""
        while True:
            text = await self.ws.read_message()
            if text is None:
                raise RuntimeError("chromium closed the DevTools connection")
            message = json.loads(text)
            if wanted(message):
                return message
            if "method" in message:
                self.events.append(message)
