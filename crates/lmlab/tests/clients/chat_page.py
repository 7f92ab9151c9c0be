"""Drives the chat page of a running `lmlab serve` in headless Chromium over the DevTools
protocol (on a pipe, so no extra packages): loads the page, types a message and presses Send,
watches the reply stream in, toggles the probability view, checks the DOM, saves a screenshot.

usage: chat_page.py CHROMIUM BASE_URL SCREENSHOT.png [API_KEY]
Prints one JSON line of what it saw; exits non-zero on a failed check.
"""

import json
import sys

from cdp import check, close, evaluate, open_page, screenshot, start, wait_until

chromium, base, shot = sys.argv[1], sys.argv[2], sys.argv[3]
key = sys.argv[4] if len(sys.argv) > 4 else ""
start(chromium)
try:
    s = open_page(base + "/")
    # Wait for the page and its model list.
    wait_until(s, """(() => { const m = document.getElementById('model');
            return document.readyState === 'complete' && !!m && !/…/.test(m.textContent); })()""", "the page did not load")
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
    screenshot(s, shot)
    print(json.dumps({"model": model, "reply": reply, "stats": stats, "renders": updates, "tokens": len(toks), "first_token": toks[0]}))
finally:
    close()
