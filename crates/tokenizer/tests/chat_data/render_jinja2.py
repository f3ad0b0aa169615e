#!/usr/bin/env python3
"""Renders every llama.cpp test chat template with Python jinja2 the way Hugging Face
transformers does (`apply_chat_template`), and writes the results as the expected outputs
that `crates/tokenizer/tests/chat_templates.rs` compares Freehold's minijinja rendering with.

Usage:
    python3 -m venv /work/.venv-chat && /work/.venv-chat/bin/pip install jinja2
    /work/.venv-chat/bin/python render_jinja2.py TEMPLATES_DIR > jinja2_expected.json

TEMPLATES_DIR is `$FREEHOLD_CACHE/llama.cpp-models/templates` (fetched by
`scripts/fetch-models llamacpp-vectors`, from the llama-cpp-python==0.3.36 sdist).

Environment (mirrors transformers' `_compile_jinja_template`):
  ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                extensions=[AssistantTracker-like `generation` tag, loopcontrols])
  filters["tojson"] = json.dumps(x, ensure_ascii=False, indent=indent, separators=..., sort_keys=...)
  globals["raise_exception"] raises TemplateError(msg)
  globals["strftime_now"] = FIXED_NOW.strftime(fmt)   (fixed date instead of now(), for determinism)
  render(messages=..., tools=..., documents=None, **extra, add_generation_prompt=..., bos_token=..., eos_token=...)
Freehold extension (not in transformers, but supported by llama.cpp and used by three DeepSeek
templates): filters["from_json"] = json.loads. Templates that transformers itself cannot compile
because of it are listed under "transformers_error".
"""
import json
import os
import sys
from datetime import datetime

import jinja2
from jinja2 import nodes
from jinja2.ext import Extension
from jinja2.sandbox import ImmutableSandboxedEnvironment

FIXED_NOW = datetime(2024, 7, 26, 13, 5, 9)
BOS = "<s>"
EOS = "</s>"

SYSTEM = {"role": "system", "content": "You are a helpful assistant. Answer briefly."}
USER1 = {"role": "user", "content": "What is the capital of France?"}
ASSISTANT1 = {"role": "assistant", "content": "The capital of France is Paris."}
USER2 = {"role": "user", "content": "And of Germany? Réponds en « français » ☕"}

# Assistant tool call (arguments as a dict, transformers' convention; a 9-character id because
# Mistral templates demand one) and the tool's answer.
ASSISTANT_TOOL_CALL = {
    "role": "assistant",
    "content": "",
    "tool_calls": [
        {
            "id": "abc123xyz",
            "type": "function",
            "function": {"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}},
        }
    ],
}
TOOL_RESULT = {"role": "tool", "tool_call_id": "abc123xyz", "name": "get_weather", "content": "{\"temperature\": 21, \"sky\": \"clear\"}"}

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string", "description": "City name, e.g. Zürich"},
                    "unit": {"type": "string", "description": "Temperature unit", "enum": ["celsius", "fahrenheit"]},
                },
                "required": ["city"],
            },
        },
    }
]

# Templates that cannot render the default conversation and get the one they accept instead.
# Keep in sync with ADJUSTED in chat_templates.rs (the test checks this file against that list).
#   no_system: the template rejects a system turn (raise_exception), so the conversations have none.
#   chat_tools: the template iterates `tools` unconditionally (a tool-use variant), so the plain
#               chat cases pass tools=[] instead of None.
#   extra: additional template variables the template requires.
ADJUSTED = {
    "google-gemma-2-2b-it.jinja": {"no_system": True, "reason": "raise_exception('System role not supported')"},
    "CohereForAI-c4ai-command-r-plus-tool_use.jinja": {
        "chat_tools": [],
        "reason": "tool_use variant: `for tool in tools` with tools=None fails",
    },
    "NousResearch-Hermes-2-Pro-Llama-3-8B-tool_use.jinja": {
        "chat_tools": [],
        "reason": "tool_use variant: `for tool in tools` with tools=None fails",
    },
    "NousResearch-Hermes-3-Llama-3.1-8B-tool_use.jinja": {
        "chat_tools": [],
        "reason": "tool_use variant: `for tool in tools` with tools=None fails",
    },
    "fireworks-ai-llama-3-firefunction-v2.jinja": {
        "extra": {"functions": "", "datetime": ""},
        "reason": "requires `functions` (the JSON function spec) and `datetime` string variables",
    },
}


class GenerationTag(Extension):
    """`{% generation %}...{% endgeneration %}`: transformers' AssistantTracker renders the
    body unchanged unless assistant-mask tracking is on (it is not, for plain rendering)."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(["name:endgeneration"], drop_needle=True)
        return nodes.CallBlock(self.call_method("_render", []), [], [], body).set_lineno(lineno)

    def _render(self, caller):
        return caller()


def make_env(from_json):
    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    def strftime_now(fmt):
        return FIXED_NOW.strftime(fmt)

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = strftime_now
    if from_json:
        env.filters["from_json"] = json.loads
    return env


def cases(name):
    adj = ADJUSTED.get(name, {})
    sys_ = [] if adj.get("no_system") else [SYSTEM]
    chat_tools = adj.get("chat_tools")
    extra = adj.get("extra", {})
    if "functions" in extra:
        extra = {"functions": json.dumps(TOOLS, ensure_ascii=False, indent=2), "datetime": "Jul 26 2024"}
    return {
        "chat": (sys_ + [USER1, ASSISTANT1], False, chat_tools, extra),
        "chat_gen": (sys_ + [USER1, ASSISTANT1, USER2], True, chat_tools, extra),
        "tools": (sys_ + [USER1], True, TOOLS, extra),
        "tool_calls": (sys_ + [USER1, ASSISTANT_TOOL_CALL, TOOL_RESULT], True, TOOLS, extra),
    }


def render(env, source, messages, add_generation_prompt, tools, extra):
    try:
        tmpl = env.from_string(source)
        out = tmpl.render(
            messages=messages,
            tools=tools,
            documents=None,
            add_generation_prompt=add_generation_prompt,
            bos_token=BOS,
            eos_token=EOS,
            **extra,
        )
        return {"ok": out}
    except Exception as e:  # noqa: BLE001 - every failure is recorded
        return {"error": f"{type(e).__name__}: {e}"}


def fnv1a64(data):
    """FNV-1a 64 of the template bytes: lets the Rust test check that the cached template is
    the one these outputs were made from."""
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def main():
    tdir = sys.argv[1]
    strict = make_env(from_json=False)
    extended = make_env(from_json=True)
    result = {
        "generator": "crates/tokenizer/tests/chat_data/render_jinja2.py",
        "jinja2_version": jinja2.__version__,
        "python_version": sys.version.split()[0],
        "fixed_now": FIXED_NOW.isoformat(),
        "bos_token": BOS,
        "eos_token": EOS,
        "templates_source": "llama-cpp-python==0.3.36 sdist, vendor/llama.cpp/models/templates",
        "templates": {},
    }
    for fname in sorted(os.listdir(tdir)):
        if not fname.endswith(".jinja"):
            continue
        with open(os.path.join(tdir, fname), "rb") as f:
            raw = f.read()
        source = raw.decode("utf-8")
        entry = {"source_bytes": len(raw), "source_fnv1a64": fnv1a64(raw), "cases": {}}
        if fname in ADJUSTED:
            entry["adjusted"] = ADJUSTED[fname]["reason"]
        try:
            strict.from_string(source)
        except Exception as e:  # noqa: BLE001
            entry["transformers_error"] = f"{type(e).__name__}: {e}"
        for cname, (messages, agp, tools, extra) in cases(fname).items():
            r = render(extended, source, messages, agp, tools, extra)
            r["messages"] = messages
            r["add_generation_prompt"] = agp
            r["tools"] = tools
            r["extra"] = extra
            entry["cases"][cname] = r
        result["templates"][fname] = entry
    json.dump(result, sys.stdout, ensure_ascii=False, indent=1, sort_keys=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
