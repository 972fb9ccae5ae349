"""A headless Chromium driven over the DevTools protocol on a pipe, with the standard library only.

``chromium --remote-debugging-pipe`` reads protocol commands from its file descriptor 3 and writes
replies and events to descriptor 4, each a JSON object ended by a NUL byte; this module is that
client (no selenium, chromedriver or playwright). Debian's ``chromium-headless-shell`` package is
the lightest browser that speaks it (``.ci/install-browser`` installs it); ``chromium`` works too.

Example::

    with Chromium(find_chromium()) as browser:
        page = browser.open(Path("report.html"))
        assert not page.errors and page.figures
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

#: The executables tried in turn; ``POLARNET_CHROMIUM`` names another one.
EXECUTABLES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
#: How to get one, for skip messages.
INSTALL = "sudo sh .ci/install-browser (run by `make venv`; it runs apt-get install chromium-headless-shell)"


def find_chromium() -> str | None:
    """The path of a Chromium executable: ``$POLARNET_CHROMIUM`` (a path or a name on ``PATH``) or
    the first of :data:`EXECUTABLES` on ``PATH``; None when there is none."""
    named = os.environ.get("POLARNET_CHROMIUM")
    if named:
        return shutil.which(named)
    return next((path for path in map(shutil.which, EXECUTABLES) if path), None)


# Run in the page once it has loaded: what the tests check, gathered in one round trip.
_INSPECT = """(async () => {
  const figures = [...document.querySelectorAll('img, canvas, object, embed, svg')]
    .filter(el => !(el.parentElement && el.parentElement.closest('svg')));  // an <svg>'s own parts are not figures
  await Promise.all(figures.filter(el => el.tagName === 'IMG').map(img => img.decode().catch(() => null)));
  const page = document.documentElement.clientWidth;
  return {
    title: document.title,
    text: document.body ? document.body.innerText : '',
    pageWidth: page,
    scrollWidth: document.documentElement.scrollWidth,  // wider than pageWidth: something runs off the page
    figures: figures.map((el, index) => {
      const box = el.getBoundingClientRect(), style = getComputedStyle(el);
      return {
        index, tag: el.tagName.toLowerCase(), alt: el.getAttribute('alt') || el.getAttribute('aria-label') || '',
        loaded: el.tagName !== 'IMG' || (el.complete && el.naturalWidth > 0 && el.naturalHeight > 0),
        naturalWidth: el.naturalWidth === undefined ? null : el.naturalWidth,
        left: box.left + scrollX, right: box.right + scrollX, width: box.width, height: box.height,
        shown: typeof el.checkVisibility === 'function'
          ? el.checkVisibility({checkOpacity: true, checkVisibilityCSS: true})
          : style.display !== 'none' && style.visibility === 'visible' && style.opacity !== '0',
        display: style.display, visibility: style.visibility,
      };
    }),
  };
})()"""


@dataclass
class Figure:
    """One figure-like element (``img``, top-level ``svg``, ``canvas``, ``object``, ``embed``) of a page."""

    index: int
    tag: str
    alt: str
    loaded: bool
    naturalWidth: int | None  # noqa: N815 (the DOM's name)
    left: float
    right: float
    width: float
    height: float
    shown: bool
    display: str
    visibility: str

    def problems(self, page_width: float) -> list[str]:
        """Why this figure is not visible in a page ``page_width`` CSS pixels wide; empty when it is."""
        out = []
        if not self.loaded:
            out.append(f"did not load (naturalWidth {self.naturalWidth})")
        if not self.shown:
            out.append(f"is hidden (display: {self.display}, visibility: {self.visibility}, or an ancestor's)")
        if self.width <= 0 or self.height <= 0:
            out.append(f"has an empty box ({self.width:g} × {self.height:g} px)")
        if self.left < -0.5 or self.right > page_width + 0.5:
            out.append(f"spills out of the page (x from {self.left:g} to {self.right:g} px, page {page_width:g} px)")
        return out

    def __str__(self) -> str:
        return f"<{self.tag}> #{self.index}" + (f" {self.alt!r}" if self.alt else "")


@dataclass
class Page:
    """What a page showed: its title and text, its console errors, and its figures per viewport width."""

    url: str
    title: str
    text: str
    errors: list[str] = field(default_factory=list)
    figures: dict[int, list[Figure]] = field(default_factory=dict)  # viewport width -> figures
    page_widths: dict[int, float] = field(default_factory=dict)
    scroll_widths: dict[int, float] = field(default_factory=dict)  # viewport width -> the page's scrollWidth

    def overflow_problems(self) -> list[str]:
        """One line per viewport width at which the page is wider than the window (a table or a
        line of text runs off its right edge, so the reader must scroll the whole page sideways)."""
        return [f"at {width} px wide the page is {self.scroll_widths[width]:g} px wide: something runs "
                f"{self.scroll_widths[width] - self.page_widths[width]:g} px off its right edge"
                for width in self.page_widths if self.scroll_widths.get(width, 0) > self.page_widths[width] + 0.5]

    def figure_problems(self) -> list[str]:
        """One line per figure that is not visible at some viewport width."""
        return [f"{figure} at {width} px wide: {'; '.join(problems)}"
                for width, figures in self.figures.items() for figure in figures
                if (problems := figure.problems(self.page_widths[width]))]


class BrowserError(RuntimeError):
    """Chromium failed, exited or did not answer in time (its stderr's tail is in the message)."""


class Chromium:
    """A headless Chromium process, driven over ``--remote-debugging-pipe``; a context manager.

    Args:
        executable: the browser's path (see :func:`find_chromium`).
        timeout: seconds to wait for any one answer or event.
    """

    def __init__(self, executable: str, *, timeout: float = 30.0) -> None:
        self.timeout = timeout
        self._profile = tempfile.TemporaryDirectory(prefix="polarnet-chromium-")
        self._log_path = Path(self._profile.name) / "stderr.log"
        self._buffer = b""
        self._next_id = 0
        self._events: list[dict] = []
        to_browser, self._send_fd = os.pipe()
        self._recv_fd, from_browser = os.pipe()
        # the child's ends, above every descriptor the spawn's actions write to (0-4)
        child_in = fcntl.fcntl(to_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        child_out = fcntl.fcntl(from_browser, fcntl.F_DUPFD_CLOEXEC, 10)
        os.close(to_browser), os.close(from_browser)
        args = [executable, "--headless", "--remote-debugging-pipe", f"--user-data-dir={self._profile.name}",
                "--no-sandbox",  # root in containers and CI; the pages are our own files
                "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--no-default-browser-check",
                "--disable-extensions", "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--mute-audio", "--hide-scrollbars", "--window-size=1280,900", "about:blank"]
        try:
            with open(self._log_path, "wb") as log:
                self.pid = os.posix_spawn(executable, args, os.environ, file_actions=[
                    (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                    (os.POSIX_SPAWN_DUP2, log.fileno(), 1), (os.POSIX_SPAWN_DUP2, log.fileno(), 2),
                    (os.POSIX_SPAWN_DUP2, child_in, 3), (os.POSIX_SPAWN_DUP2, child_out, 4)],
                    setpgroup=0)  # its own process group: close() ends the browser and its helpers
        except BaseException:
            os.close(self._send_fd), os.close(self._recv_fd)
            self._profile.cleanup()
            raise
        finally:
            os.close(child_in), os.close(child_out)
        self._closed = False
        try:
            self.version = self.call("Browser.getVersion")["product"]
        except BaseException:
            self.close()
            raise

    # -- the protocol -------------------------------------------------------------------------
    def call(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        """Send one command and return its result; raises :class:`BrowserError` on an error reply."""
        self._next_id += 1
        message = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        try:
            while data:
                data = data[os.write(self._send_fd, data):]
        except OSError as e:
            raise self._failure(f"cannot send {method}: {e}") from None
        while True:
            reply = self._receive(f"the reply to {method}")
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise BrowserError(f"{method}: {reply['error'].get('message')} ({reply['error']})")
                return reply.get("result", {})
            if "method" in reply:
                self._events.append(reply)

    def wait_for(self, method: str, session: str | None = None) -> dict:
        """The parameters of the first event ``method`` (of ``session``) not yet waited for."""
        while True:
            for i, event in enumerate(self._events):
                if event["method"] == method and event.get("sessionId") == session:
                    return self._events.pop(i).get("params", {})
            reply = self._receive(f"the event {method}")
            if "method" in reply:
                self._events.append(reply)

    def _receive(self, what: str) -> dict:
        deadline = time.monotonic() + self.timeout
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._recv_fd], [], [], left)[0]:
                raise self._failure(f"no answer in {self.timeout:g} s waiting for {what}")
            chunk = os.read(self._recv_fd, 1 << 20)
            if not chunk:
                raise self._failure(f"the browser closed its pipe waiting for {what}")
            self._buffer += chunk
        message, self._buffer = self._buffer.split(b"\0", 1)
        return json.loads(message)

    def _failure(self, what: str) -> BrowserError:
        try:
            tail = self._log_path.read_text(errors="replace").strip().splitlines()[-5:]
        except OSError:
            tail = []
        return BrowserError(f"Chromium: {what}" + ("; its stderr ends:\n" + "\n".join(tail) if tail else ""))

    # -- pages --------------------------------------------------------------------------------
    def open(self, path: Path, widths: tuple[int, ...] = (1280, 390)) -> Page:
        """Load the file ``path`` in a new tab and report what it showed.

        Console errors are ``console.error``/``console.assert`` calls, uncaught exceptions and the
        browser's own error log (a resource that failed to load, a blocked request, …). Figures are
        measured once per viewport width in ``widths`` (CSS pixels; the default: a laptop, a phone).
        """
        url = Path(path).resolve().as_uri()
        target = self.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        try:
            for domain in ("Page", "Runtime", "Log"):
                self.call(f"{domain}.enable", session=session)
            self._events = [e for e in self._events if e.get("sessionId") != session]  # about:blank's
            navigation = self.call("Page.navigate", {"url": url}, session=session)
            if navigation.get("errorText"):
                raise BrowserError(f"cannot open {url}: {navigation['errorText']}")
            self.wait_for("Page.loadEventFired", session)
            page = None
            for width in widths:
                self.call("Emulation.setDeviceMetricsOverride",
                          {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False}, session)
                found = self.call("Runtime.evaluate", {"expression": _INSPECT, "awaitPromise": True,
                                                       "returnByValue": True}, session)
                if "exceptionDetails" in found:
                    raise BrowserError(f"inspecting {url}: {found['exceptionDetails']}")
                value = found["result"]["value"]
                if page is None:
                    page = Page(url, value["title"], value["text"])
                page.figures[width] = [Figure(**f) for f in value["figures"]]
                page.page_widths[width] = value["pageWidth"]
                page.scroll_widths[width] = value["scrollWidth"]
            self.call("Runtime.evaluate", {"expression": "0"}, session)  # flush pending console events
            page.errors = self._errors(session)
            return page
        finally:
            try:
                self.call("Target.closeTarget", {"targetId": target})
            except BrowserError:
                pass  # the browser is gone: the error that got us here says why

    def _errors(self, session: str) -> list[str]:
        errors, kept = [], []
        for event in self._events:
            if event.get("sessionId") != session:
                kept.append(event)
                continue
            method, params = event["method"], event.get("params", {})
            if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                words = [str(a.get("value", a.get("description", a.get("type")))) for a in params.get("args", [])]
                errors.append(f"console.{params['type']}: {' '.join(words)}")
            elif method == "Runtime.exceptionThrown":
                details = params.get("exceptionDetails", {})
                errors.append("uncaught: " + details.get("exception", {}).get("description", details.get("text", "")))
            elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
                entry = params["entry"]
                errors.append(f"{entry.get('source')}: {entry.get('text')}" +
                              (f" ({entry['url'][:120]})" if entry.get("url") else ""))
        self._events = kept
        return errors

    # -- life ---------------------------------------------------------------------------------
    def close(self) -> None:
        """End the browser (politely, then its whole process group) and remove its profile."""
        if self._closed:
            return
        self._closed = True
        try:
            self.timeout = 5.0
            self.call("Browser.close")
        except (BrowserError, OSError):
            pass
        deadline = time.monotonic() + 5
        while os.waitpid(self.pid, os.WNOHANG) == (0, 0) and time.monotonic() < deadline:
            time.sleep(0.05)
        try:
            os.killpg(self.pid, signal.SIGKILL)  # helpers still running, or a browser that did not close
        except ProcessLookupError:
            pass
        try:
            os.waitpid(self.pid, 0)
        except ChildProcessError:
            pass
        os.close(self._send_fd), os.close(self._recv_fd)
        self._profile.cleanup()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
