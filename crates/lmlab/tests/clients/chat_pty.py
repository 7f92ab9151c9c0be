"""Drives `lmlab chat` through a pseudo-terminal, as a person at a terminal would: the
commands, a streamed reply with its tokens/s line, save/reset/load, Ctrl-C at the prompt,
and (with a second, slower model) Ctrl-C stopping a reply without leaving the chat.

usage: chat_pty.py LMLAB MODEL WORKDIR [SLOW_MODEL]
Exits non-zero, with the transcript, on a failed check.
"""

import os
import re
import pty
import select
import sys
import time

lmlab, model, work = sys.argv[1], sys.argv[2], sys.argv[3]
slow = sys.argv[4] if len(sys.argv) > 4 else None


class Session:
    def __init__(self, args):
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.environ["RUST_LOG"] = "warn"
            os.execv(lmlab, [lmlab, "chat"] + args)
        self.seen = ""
        self.mark = 0

    def expect(self, text, timeout=60):
        """Waits until `text` appears after the last match; returns what came before it."""
        deadline = time.time() + timeout
        while text not in self.seen[self.mark:]:
            left = deadline - time.time()
            if left <= 0 or not self.read(left):
                sys.exit(f"expected {text!r}; transcript:\n{self.seen}")
        at = self.seen.index(text, self.mark)
        before = self.seen[self.mark:at]
        self.mark = at + len(text)
        return before

    def read(self, timeout):
        r, _, _ = select.select([self.fd], [], [], timeout)
        if not r:
            return False
        try:
            data = os.read(self.fd, 4096)
        except OSError:
            return False
        self.seen += data.decode("utf-8", "replace")
        return bool(data)

    def send(self, line):
        os.write(self.fd, line.encode())

    def wait_exit(self, timeout=20):
        deadline = time.time() + timeout
        while time.time() < deadline:
            self.read(0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        sys.exit(f"lmlab chat did not exit; transcript:\n{self.seen}")


s = Session(["--model", model, "--temperature", "0", "--max-tokens", "12"])
s.expect("/help lists the commands")
s.expect("> ")
s.send("/help\n")
s.expect("/set NAME VALUE")
s.expect("> ")
s.send("/set temperature 0.7\n")
s.expect("(temperature = 0.7)")
s.send("/set top_p 3\n")
s.expect("error: top-p must be in (0, 1]")
s.send("/set max_tokens 8\n")
s.expect("(max_tokens = 8)")
s.send("/system Be brief.\n")
s.expect("(system message set)")
s.send("/show\n")
shown = s.expect("conversation: 0 messages")
assert "temperature 0.7" in shown and "max_tokens 8" in shown and "system: Be brief." in shown, shown
s.send("/set temperature 0\n")
s.expect("(temperature = 0)")
s.send("hello there\n")
reply = s.expect(" tok/s, first token ")
assert "tokens, " in reply, reply
s.expect("> ")
path = os.path.join(work, "chat.json")
s.send(f"/save {path}\n")
s.expect(f"(saved 2 messages to {path})")
s.send("/reset\n")
s.expect("(conversation cleared)")
s.send("/show\n")
s.expect("conversation: 0 messages")
s.send(f"/load {path}\n")
s.expect(f"(loaded 2 messages from {path})")
s.send("/show\n")
shown = s.expect("conversation: 2 messages")
assert "system: Be brief." in shown, shown
# The next turn's prompt begins with the conversation so far: the last reply's cache serves it.
s.send("and then?\n")
# (expect returns the transcript up to the text it waited for)
stats = s.expect(" prompt tokens from the last turn's cache")
m = re.search(r"(\d+) of (\d+)$", stats)
assert m and 8 <= int(m.group(1)) < int(m.group(2)), stats
s.expect("> ")
# Ctrl-C at the prompt says how to leave and leaves nothing.
s.send("\x03")
s.expect("Ctrl-D leaves)")
s.send("/exit\n")
code = s.wait_exit()
assert code == 0, f"exit code {code}"
result = {"commands": "ok"}

if slow:
    # A long reply (end-of-turn tokens banned) stopped by Ctrl-C; the chat goes on.
    s = Session(["--model", slow, "--temperature", "0.8", "--max-tokens", "400", "--logit-bias", "0=-100", "--logit-bias", "2=-100"])
    s.expect("> ")
    s.send("Write a long story about a dragon.\n")
    s.expect("Write a long story about a dragon.")
    start = len(s.seen)
    deadline = time.time() + 60
    while len(s.seen) - start < 40 and time.time() < deadline:
        s.read(1)
    s.send("\x03")
    stats = s.expect(", stopped]", timeout=20)
    s.expect("> ")
    s.send("/show\n")
    s.expect("conversation: 2 messages")
    s.send("/exit\n")
    assert s.wait_exit() == 0
    result["ctrl_c"] = "stopped a reply"

print(result)
