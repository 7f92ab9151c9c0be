"""The official `openai` Python package against a running `lmlab serve`: a completion, a chat
completion, a streamed chat completion (with usage), and a call with a wrong key.

usage: openai_client.py BASE_URL MODEL KEY
Prints one JSON line of what it got; exits non-zero on a failed check. Exit code 3: the
package is not installed.
"""

import json
import sys

try:
    import openai
except ImportError:
    sys.exit(3)

base, model, key = sys.argv[1], sys.argv[2], sys.argv[3]
client = openai.OpenAI(base_url=base + "/v1", api_key=key, max_retries=0, timeout=60)

models = [m.id for m in client.models.list()]
assert models == [model], models

c = client.completions.create(model=model, prompt="the cat", max_tokens=6, temperature=0)
assert c.object == "text_completion" and isinstance(c.choices[0].text, str), c
assert c.usage.prompt_tokens > 0 and c.usage.total_tokens == c.usage.prompt_tokens + c.usage.completion_tokens, c.usage

chat = client.chat.completions.create(
    model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    max_tokens=8, temperature=0, seed=1,
)
text = chat.choices[0].message.content
assert chat.choices[0].message.role == "assistant" and chat.choices[0].finish_reason in ("stop", "length"), chat

pieces, usage, finish = [], None, None
stream = client.chat.completions.create(
    model=model, messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello"}],
    max_tokens=8, temperature=0, seed=1, stream=True, stream_options={"include_usage": True},
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for ch in chunk.choices:
        if ch.delta.content:
            pieces.append(ch.delta.content)
        finish = ch.finish_reason or finish
assert "".join(pieces) == text, (pieces, text)
assert usage is not None and usage.completion_tokens == chat.usage.completion_tokens, usage
assert finish == chat.choices[0].finish_reason

wrong = openai.OpenAI(base_url=base + "/v1", api_key="not-the-key", max_retries=0)
try:
    wrong.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    raise AssertionError("a wrong key was accepted")
except openai.AuthenticationError as e:
    assert e.status_code == 401 and e.body["code"] == "invalid_api_key", e.body

try:
    client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "hi"}], max_tokens=2)
    raise AssertionError("an unknown model was accepted")
except openai.NotFoundError as e:
    assert e.status_code == 404

print(json.dumps({"openai": openai.__version__, "completion": c.choices[0].text, "chat": text, "stream_pieces": len(pieces), "usage": usage.model_dump()}))
