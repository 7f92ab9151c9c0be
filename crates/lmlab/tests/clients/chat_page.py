"""Drives the chat page of a running `lmlab serve` in headless Chromium over the DevTools
protocol (on a pipe, so no extra packages): loads the page, types a message and presses Send,
watches the reply stream in, toggles the probability view, checks the DOM, saves a screenshot.

usage: chat_page.py CHROMIUM BASE_URL SCREENSHOT.png [API_KEY]
Prints one JSON line of what it saw; exits non-zero on a failed check.
"""

import base64
import json
import os
import subprocess
import sys
import tempfile
import time

chromium, base, shot = sys.argv[1], sys.argv[2], sys.argv[3]
key = sys.argv[4] if len(sys.argv) > 4 else ""
profile = tempfile.mkdtemp(prefix="lmlab-chromium-")
# fds 3 and 4 of the child are its DevTools pipe: it reads commands on 3, writes on 4.
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
buf = b""
next_id = 0


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


try:
    target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
    s = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    call("Page.enable", session=s)
    call("Page.navigate", {"url": base + "/"}, s)
    # Wait for the page and its model list (a try may meet the navigation's end: retried).
    for attempt in range(200):
        try:
            if evaluate(s, """(() => { const m = document.getElementById('model');
                    return document.readyState === 'complete' && !!m && !/…/.test(m.textContent); })()"""):
                break
        except CdpError:
            pass
        time.sleep(0.1)
    else:
        raise SystemExit("the page did not load")
    model = evaluate(s, "document.getElementById('model').textContent")
    # Count the reply's renders (one per streamed chunk the page reads) and note whether it
    # asked for a stream; then type and send.
    evaluate(s, """window.__renders = 0; window.__streamed = null;
        const replace = Element.prototype.replaceChildren;
        Element.prototype.replaceChildren = function (...a) {
            if (this.classList && this.classList.contains('body')) window.__renders++;
            return replace.apply(this, a); };
        const fetch0 = window.fetch;
        window.fetch = function (url, opts) {
            if (String(url).includes('/chat/completions')) window.__streamed = JSON.parse(opts.body).stream;
            return fetch0.apply(this, arguments); };
        true""")
    evaluate(s, "const k = document.getElementById('api_key'); k.value = " + json.dumps(key) + "; k.dispatchEvent(new Event('change')); true")
    evaluate(s, """document.getElementById('temperature').value = '0';
        document.getElementById('max_tokens').value = '24';
        document.getElementById('input').value = 'Hello! Who are you?';
        document.getElementById('send').click(); true""")
    evaluate(s, """new Promise((ok, no) => { const t0 = Date.now(); (function poll() {
        if (document.querySelector('.msg.assistant[data-done]')) ok(true);
        else if (Date.now() - t0 > 60000) no('no finished reply'); else setTimeout(poll, 50); })(); })""", timeout=90)
    reply = evaluate(s, "document.querySelector('.msg.assistant .body').textContent")
    stats = evaluate(s, "document.querySelector('.msg.assistant .stats').textContent")
    updates = evaluate(s, "window.__renders")
    streamed = evaluate(s, "window.__streamed")
    user = evaluate(s, "document.querySelector('.msg.user').textContent")
    check(user == "Hello! Who are you?", f"the user's message is shown: {user!r}")
    check(reply.strip() != "", "a reply arrived")
    check("error" not in evaluate(s, "document.querySelector('.msg.assistant').className"), "no error")
    check(streamed is True, "the page asked for a stream")
    check(updates >= 4, f"the reply was rendered piece by piece as it streamed ({updates} renders)")
    check("tok/s" in stats, f"stats under the reply: {stats!r}")
    # The probability view: one coloured span per token, alternatives on hover (title).
    evaluate(s, "document.getElementById('probs').click(); true")
    toks = evaluate(s, """[...document.querySelectorAll('.msg.assistant .tok')].map(e => ({
        text: e.textContent, p: Number(e.dataset.p), title: e.title, bg: e.style.background }))""")
    check(len(toks) > 0, "token spans in the probability view")
    check(all(0 <= t["p"] <= 1 and t["bg"] and "%" in t["title"] for t in toks), f"each token has p, colour, alternatives: {toks[:2]}")
    squeeze = lambda x: "".join(x.split())
    check(squeeze("".join(t["text"] for t in toks)) == squeeze(reply), "the spans spell the reply")
    # Model output is text, never markup: no element came from the reply's content.
    check(evaluate(s, "document.querySelectorAll('.msg.assistant script, .msg.assistant img, .msg.assistant iframe').length") == 0, "no markup from the model")
    png = call("Page.captureScreenshot", {"format": "png"}, s)["data"]
    with open(shot, "wb") as f:
        f.write(base64.b64decode(png))
    print(json.dumps({"model": model, "reply": reply, "stats": stats, "renders": updates, "tokens": len(toks), "first_token": toks[0]}))
finally:
    try:
        call("Browser.close", timeout=5)
    except BaseException:
        pass
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
