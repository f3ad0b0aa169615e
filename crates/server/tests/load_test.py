"""Load test: CLIENTS concurrent streaming chat clients for SECONDS, through the official
`openai` client. Every stream must end with exactly one finish_reason, a usage chunk whose
completion_tokens matches the streamed content chunks' count bound, and no error.

Usage: python load_test.py BASE_URL MODEL_ID CLIENTS SECONDS MAX_TOKENS
Prints one JSON line with the totals; exits non-zero on any error or malformed stream.
"""
import json
import sys
import threading
import time

from openai import OpenAI

base_url, model = sys.argv[1], sys.argv[2]
clients, seconds, max_tokens = int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
deadline = time.monotonic() + seconds
lock = threading.Lock()
totals = {"streams": 0, "tokens": 0, "errors": [], "malformed": []}
topics = ["the sea", "a robot", "mountains", "a city at night", "bread", "a cat", "rain", "the moon"]


def worker(i):
    client = OpenAI(base_url=base_url, api_key="none", max_retries=0, timeout=600)
    k = 0
    while time.monotonic() < deadline:
        k += 1
        try:
            stream = client.chat.completions.create(
                model=model,
                messages=[{"role": "system", "content": "You are a helpful assistant."},
                          {"role": "user", "content": f"Write one sentence about {topics[(i + k) % len(topics)]}."}],
                max_tokens=max_tokens, temperature=0.7, stream=True,
                stream_options={"include_usage": True})
            finishes, usage, pieces = [], None, 0
            for ch in stream:
                if ch.usage is not None:
                    usage = ch.usage
                for c in ch.choices:
                    if c.delta.content:
                        pieces += 1
                    if c.finish_reason:
                        finishes.append(c.finish_reason)
            ok = (len(finishes) == 1 and finishes[0] in ("stop", "length") and usage is not None
                  and 0 < usage.completion_tokens <= max_tokens and pieces <= usage.completion_tokens)
            with lock:
                if ok:
                    totals["streams"] += 1
                    totals["tokens"] += usage.completion_tokens
                else:
                    totals["malformed"].append({"finishes": finishes, "usage": str(usage), "pieces": pieces})
        except Exception as e:  # any error fails the test
            with lock:
                totals["errors"].append(repr(e))


threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
t0 = time.monotonic()
for t in threads:
    t.start()
for t in threads:
    t.join()
totals["seconds"] = time.monotonic() - t0
print(json.dumps(totals))
if totals["errors"] or totals["malformed"] or totals["streams"] < clients:
    sys.exit(f"load test failed: {len(totals['errors'])} errors, {len(totals['malformed'])} malformed, {totals['streams']} streams")
