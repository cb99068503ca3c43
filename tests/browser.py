"""Load an HTML report in a real headless Chromium (Debian's `chromium`) and report what it
did: the figures it laid out, the requests it made, CSP violations, script errors, and a
screenshot.

The page is served from 127.0.0.1 with a strict Content-Security-Policy header
(`default-src 'none'` plus inline scripts and styles), independent of what the page itself
declares, and Chromium is driven over the DevTools protocol (aiohttp's websocket client).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import http.server
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time

CSP = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'"

_WATCH = """
window.__violations = [];
document.addEventListener('securitypolicyviolation', function (e) {
  window.__violations.push(e.violatedDirective + ' ' + e.blockedURI);
});
"""

_FIGURES = """
Array.from(document.querySelectorAll('figure svg')).map(function (s) {
  var r = s.getBoundingClientRect();
  return [r.width, r.height, s.querySelectorAll('path, use, text, rect').length];
})
"""

# Every figure's tick labels as laid out: [left, top, right, bottom] per label, by axis.
_TICK_LABELS = """
Array.from(document.querySelectorAll('figure svg')).map(function (s) {
  function boxes(axis) {
    return Array.from(s.querySelectorAll('g[id^="' + axis + 'tick_"] text')).map(function (t) {
      var r = t.getBoundingClientRect();
      return {text: t.textContent, box: [r.left, r.top, r.right, r.bottom]};
    });
  }
  var r = s.getBoundingClientRect();
  return {svg: [r.left, r.top, r.right, r.bottom], x: boxes('x'), y: boxes('y')};
})
"""


@dataclasses.dataclass
class Rendered:
    figures: list  # [width, height, drawn elements] per figure's <svg>
    requests: list[str]  # every URL the page asked for, the page itself excluded
    server_hits: list[str]  # paths the local server was asked for, the page excluded
    violations: list[str]
    errors: list[str]
    title: str
    load_ms: float
    screenshot: str
    # Per figure: {"svg": box, "x": [{"text", "box"}], "y": [...]}, boxes [l, t, r, b] in px.
    tick_labels: list = dataclasses.field(default_factory=list)
    origin: str = ""  # the local server's http://127.0.0.1:PORT


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        raise RuntimeError("chromium is not installed: `make test` installs it (as root: "
                           "apt-get install -y chromium)")
    return path


class _Handler(http.server.BaseHTTPRequestHandler):
    page = b""
    hits: list[str] = []

    def do_GET(self):  # noqa: N802
        if self.path != "/report.html":
            if self.path != "/favicon.ico":  # the browser's, not the page's
                self.hits.append(self.path)
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Security-Policy", CSP)
        self.send_header("Content-Length", str(len(self.page)))
        self.end_headers()
        self.wfile.write(self.page)

    def log_message(self, *args):
        pass


async def _drive(ws_url: str, url: str, shot: str, timeout: float) -> Rendered:
    import aiohttp

    requests: list[str] = []
    errors: list[str] = []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url, max_msg_size=0) as ws:
            pending: dict[int, asyncio.Future] = {}
            loaded = asyncio.get_running_loop().create_future()
            counter = iter(range(1, 1 << 30))

            async def reader():
                async for msg in ws:
                    data = json.loads(msg.data)
                    if "id" in data and data["id"] in pending:
                        pending.pop(data["id"]).set_result(data)
                    elif data.get("method") == "Network.requestWillBeSent":
                        requests.append(data["params"]["request"]["url"])
                    elif data.get("method") == "Runtime.exceptionThrown":
                        errors.append(json.dumps(data["params"]["exceptionDetails"])[:500])
                    elif data.get("method") == "Page.loadEventFired" and not loaded.done():
                        loaded.set_result(time.perf_counter())

            task = asyncio.create_task(reader())

            async def call(method: str, **params):
                n = next(counter)
                pending[n] = asyncio.get_running_loop().create_future()
                await ws.send_str(json.dumps({"id": n, "method": method, "params": params}))
                reply = await asyncio.wait_for(pending[n], timeout)
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

            for domain in ("Page", "Network", "Runtime"):
                await call(f"{domain}.enable")
            await call("Page.addScriptToEvaluateOnNewDocument", source=_WATCH)
            await call("Emulation.setDeviceMetricsOverride", width=1280, height=900,
                       deviceScaleFactor=1, mobile=False)
            start = time.perf_counter()
            await call("Page.navigate", url=url)
            end = await asyncio.wait_for(loaded, timeout)

            async def value(expression: str):
                result = await call("Runtime.evaluate", expression=expression,
                                    returnByValue=True)
                return result["result"].get("value")

            figures = await value(_FIGURES)
            tick_labels = await value(_TICK_LABELS)
            violations = await value("window.__violations")
            title = await value("document.title")
            metrics = await call("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            png = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                             clip={"x": 0, "y": 0, "width": size["width"],
                                   "height": min(size["height"], 12000), "scale": 1})
            with open(shot, "wb") as f:
                f.write(base64.b64decode(png["data"]))
            task.cancel()
    return Rendered(figures or [], [u for u in requests if u != url], [], violations or [],
                    errors, title or "", 1000 * (end - start), shot, tick_labels or [])


@contextlib.contextmanager
def _chromium(timeout: float):
    """A headless Chromium with its DevTools endpoint: yields the first page's websocket URL."""
    import urllib.request

    profile = tempfile.mkdtemp(prefix="tandem-chromium-")
    proc = subprocess.Popen(
        [chromium(), "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
         "--disable-extensions", "--disable-background-networking", "--disable-sync",
         "--disable-component-update", "--disable-default-apps", "--mute-audio",
         "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
         f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = os.path.join(profile, "DevToolsActivePort")
        deadline = time.monotonic() + timeout
        while not (os.path.exists(port_file) and open(port_file).read().strip()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("chromium did not start its DevTools endpoint")
            time.sleep(0.05)
        port = open(port_file).read().split()[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            pages = [t for t in json.load(r) if t["type"] == "page"]
        yield pages[0]["webSocketDebuggerUrl"]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(profile, ignore_errors=True)


@contextlib.contextmanager
def _serving(handler):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def render(html_path: str, screenshot: str, timeout: float = 60.0) -> Rendered:
    """Serve `html_path` under the strict CSP, load it in headless Chromium, and return what
    happened; the screenshot is written to `screenshot`."""
    with open(html_path, "rb") as f:
        handler = type("Handler", (_Handler,), {"page": f.read(), "hits": []})
    with _serving(handler) as origin, _chromium(timeout) as ws_url:
        rendered = asyncio.run(_drive(ws_url, f"{origin}/report.html", screenshot, timeout))
        rendered.server_hits = list(handler.hits)
        return rendered


def render_site(root: str, page: str, screenshot: str, timeout: float = 60.0) -> Rendered:
    """Serve the directory `root` (a built site) from 127.0.0.1, load `page` in headless
    Chromium, and return what happened. `requests` holds every URL the page asked for, its own
    files included: a site that renders offline asks only its own origin; `server_hits` holds
    the paths the server did not have."""
    import functools

    class Handler(http.server.SimpleHTTPRequestHandler):
        missing: list[str] = []

        def send_error(self, code, message=None, explain=None):
            if self.path != "/favicon.ico":
                self.missing.append(self.path)
            super().send_error(code, message, explain)

        def log_message(self, *args):
            pass

    handler = functools.partial(Handler, directory=root)
    with _serving(handler) as origin, _chromium(timeout) as ws_url:
        rendered = asyncio.run(_drive(ws_url, f"{origin}/{page}", screenshot, timeout))
        rendered.server_hits = list(Handler.missing)
        rendered.origin = origin
        return rendered


def overlapping(labels: list[dict]) -> list[tuple[str, str]]:
    """Pairs of laid-out labels ({"text", "box"}) whose boxes intersect."""
    out = []
    for i, a in enumerate(labels):
        for b in labels[i + 1:]:
            (l1, t1, r1, b1), (l2, t2, r2, b2) = a["box"], b["box"]
            if min(r1, r2) > max(l1, l2) and min(b1, b2) > max(t1, t2):
                out.append((a["text"], b["text"]))
    return out


def ink(png_path: str) -> float:
    """The fraction of the screenshot's pixels that are not background white."""
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(png_path).convert("L"))
    return float((pixels < 240).mean())
