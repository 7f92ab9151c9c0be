"""Headless Chromium over the DevTools protocol on a pipe (no extra packages), for the tests'
page drivers: `start(chromium)`, then `call`, `evaluate`, `check`, and `close()` at the end.
"""

import base64
import json
import os
import subprocess
import tempfile
import time

proc = None
out = None
inp = None
buf = b""
next_id = 0


def start(chromium):
    """Launches headless Chromium with its DevTools pipe on fds 3 and 4 of the child."""
    global proc, out, inp
    profile = tempfile.mkdtemp(prefix="lmlab-chromium-")
    to_child_r, to_child_w = os.pipe()
    from_child_r, from_child_w = os.pipe()

    def child_fds():
        # Copy both ends above 4 first: a pipe end may itself be fd 3 or 4.
        r, w = os.dup(to_child_r), os.dup(from_child_w)
        os.dup2(r, 3)
        os.dup2(w, 4)

    proc = subprocess.Popen(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
         "--remote-debugging-pipe", f"--user-data-dir={profile}", "--window-size=1200,800", "about:blank"],
        close_fds=False, preexec_fn=child_fds,
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(profile, "stderr.txt"), "wb"),
    )
    os.close(to_child_r)
    os.close(from_child_w)
    out = os.fdopen(to_child_w, "wb", buffering=0)
    inp = os.fdopen(from_child_r, "rb", buffering=0)


class CdpError(Exception):
    pass


def call(method, params=None, session=None, timeout=60):
    global buf, next_id
    next_id += 1
    msg = {"id": next_id, "method": method, "params": params or {}}
    if session:
        msg["sessionId"] = session
    out.write(json.dumps(msg).encode() + b"\0")
    deadline = time.time() + timeout
    while time.time() < deadline:
        while b"\0" not in buf:
            chunk = inp.read(1 << 16)
            if not chunk:
                raise SystemExit("chromium closed the pipe")
            buf += chunk
        raw, buf = buf.split(b"\0", 1)
        reply = json.loads(raw)
        if reply.get("id") == next_id:
            if "error" in reply:
                raise CdpError(f"{method}: {reply['error']}")
            return reply["result"]
    raise SystemExit(f"{method}: no answer in {timeout}s")


def evaluate(session, js, timeout=60):
    r = call("Runtime.evaluate", {"expression": js, "awaitPromise": True, "returnByValue": True}, session, timeout)
    if "exceptionDetails" in r:
        raise SystemExit(f"page script failed: {r['exceptionDetails']}")
    return r["result"].get("value")


def check(cond, what):
    if not cond:
        raise SystemExit(f"check failed: {what}")


def wait_until(session, js, what, tries=200):
    """Evaluates `js` every 0.1 s until it is true (a try may meet a navigation's end: retried)."""
    for _ in range(tries):
        try:
            if evaluate(session, js):
                return
        except CdpError:
            pass
        time.sleep(0.1)
    raise SystemExit(what)


def open_page(url):
    """A new tab showing `url`; returns its session."""
    target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    call("Page.enable", session=s)
    call("Page.navigate", {"url": url}, s)
    return s


def screenshot(session, path, full_page=False):
    params = {"format": "png"}
    if full_page:
        params["captureBeyondViewport"] = True
    png = call("Page.captureScreenshot", params, session)["data"]
    with open(path, "wb") as f:
        f.write(base64.b64decode(png))


def close():
    try:
        call("Browser.close", timeout=5)
    except BaseException:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
