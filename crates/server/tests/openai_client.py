"""Drives `freehold serve` with the official `openai` Python client, unchanged.

Usage: python openai_client.py BASE_URL MODEL_ID API_KEY
Exits non-zero with a message naming the failed check.
"""
import sys

import openai
from openai import OpenAI

base_url, model, key = sys.argv[1:4]
client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=300)
failures = []


def check(name, cond, detail=""):
    if cond:
        print(f"ok   {name}")
    else:
        print(f"FAIL {name}: {detail}")
        failures.append(name)


msgs = [{"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France? Answer in one word."}]

# --- models
ms = client.models.list()
check("models.list", any(m.id == model for m in ms.data), [m.id for m in ms.data])
check("models.retrieve", client.models.retrieve(model).id == model)

# --- chat, greedy
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0)
c = r.choices[0]
check("chat object", r.object == "chat.completion" and c.message.role == "assistant", r)
check("chat content", isinstance(c.message.content, str) and len(c.message.content) > 0, c)
check("chat answer", "paris" in c.message.content.lower(), c.message.content)
check("chat finish_reason", c.finish_reason in ("stop", "length"), c.finish_reason)
u = r.usage
check("chat usage", u.prompt_tokens > 5 and 0 < u.completion_tokens <= 12
      and u.total_tokens == u.prompt_tokens + u.completion_tokens, u)

# --- max_completion_tokens gives finish_reason length
r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Write a long story about a dragon."}],
                                   max_completion_tokens=5, temperature=0)
check("length finish", r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5, r)

# --- completions
r = client.completions.create(model=model, prompt="The quick brown fox", max_tokens=8, temperature=0)
check("completion object", r.object == "text_completion" and len(r.choices[0].text) > 0, r)
check("completion usage", r.usage.completion_tokens == 8 and r.choices[0].finish_reason == "length", r.usage)

# --- streaming chat with usage
chunks = list(client.chat.completions.create(model=model, messages=msgs, max_tokens=12, temperature=0,
                                             stream=True, stream_options={"include_usage": True}))
text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
finish = [ch.choices[0].finish_reason for ch in chunks if ch.choices and ch.choices[0].finish_reason]
usage = [ch.usage for ch in chunks if ch.usage]
check("stream role first", chunks[0].choices[0].delta.role == "assistant", chunks[0])
check("stream text equals non-stream", text == c.message.content, (text, c.message.content))
check("stream one finish_reason", len(finish) == 1, finish)
check("stream usage last", len(usage) == 1 and chunks[-1].usage is not None and chunks[-1].choices == [], chunks[-1])
check("stream usage counts", usage and usage[0].completion_tokens == u.completion_tokens, usage)

# --- streaming completion
chunks = list(client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, temperature=0, stream=True))
text = "".join(ch.choices[0].text for ch in chunks if ch.choices)
r2 = client.completions.create(model=model, prompt="Once upon a time", max_tokens=10, temperature=0)
check("completion stream equals non-stream", text == r2.choices[0].text, (text, r2.choices[0].text))

# --- stop
full = client.completions.create(model=model, prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0).choices[0].text
check("counting continues", " 6" in full, full)
r = client.completions.create(model=model, prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0, stop=[" 8", "xyz"])
check("stop cuts before the stop string", r.choices[0].finish_reason == "stop" and " 8" not in r.choices[0].text
      and full.startswith(r.choices[0].text), (r.choices[0].text, full))
chunks = list(client.completions.create(model=model, prompt="1, 2, 3, 4, 5,", max_tokens=20, temperature=0,
                                        stop=" 8", stream=True))
stext = "".join(ch.choices[0].text for ch in chunks if ch.choices)
check("stream stop", stext == r.choices[0].text, (stext, r.choices[0].text))

# --- seed reproducibility with sampling
def sample(seed):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Tell me a short joke."}],
                                          max_tokens=20, temperature=1.0, top_p=0.95, seed=seed).choices[0].message.content
a, b, d = sample(1234), sample(1234), sample(99)
check("seed reproduces", a == b, (a, b))
check("other seed differs", a != d, (a, d))

# --- n, penalties, logprobs, user
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=6, temperature=1.0, seed=5, n=3, user="tester",
                                   presence_penalty=0.5, frequency_penalty=0.5)
check("n choices", [ch.index for ch in r.choices] == [0, 1, 2], r.choices)
r = client.chat.completions.create(model=model, messages=msgs, max_tokens=4, temperature=0, logprobs=True, top_logprobs=3)
lp = r.choices[0].logprobs.content
check("chat logprobs", len(lp) >= 1 and len(lp[0].top_logprobs) == 3 and lp[0].logprob <= 0
      and abs(lp[0].logprob - lp[0].top_logprobs[0].logprob) < 1e-4, lp[:1])
r = client.completions.create(model=model, prompt="Hello", max_tokens=3, temperature=0, logprobs=2)
check("completion logprobs", len(r.choices[0].logprobs.token_logprobs) == 3 and len(r.choices[0].logprobs.top_logprobs[0]) >= 1,
      r.choices[0].logprobs)

# --- errors raise the client's usual exceptions
try:
    client.chat.completions.create(model="no-such-model", messages=msgs)
    check("unknown model", False, "no exception")
except openai.NotFoundError as e:
    check("unknown model 404", e.status_code == 404 and e.body.get("code") == "model_not_found", e.body)
try:
    client.chat.completions.create(model=model, messages=msgs, temperature=5)
    check("bad temperature", False, "no exception")
except openai.BadRequestError as e:
    check("bad temperature 400", e.status_code == 400 and e.body.get("param") == "temperature", e.body)
try:
    client.chat.completions.create(model=model, messages=[])
    check("empty messages", False, "no exception")
except openai.BadRequestError as e:
    check("empty messages 400", e.body.get("param") == "messages", e.body)
try:
    OpenAI(base_url=base_url, api_key="wrong-key-123", max_retries=0).models.list()
    check("wrong key", key == "none", "no exception although keys are configured")
except openai.AuthenticationError as e:
    check("wrong key 401", key != "none" and e.status_code == 401, e.body)

if failures:
    sys.exit(f"{len(failures)} check(s) failed: {failures}")
print("all checks passed")
