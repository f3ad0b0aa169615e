#!/usr/bin/env python3
"""Generates the test vectors in tests/data from the `gguf` Python package (gguf-py).

Run from anywhere, with a Python that has `gguf` and `numpy` installed, e.g.:

    python3 -m venv /work/.venv-quant && /work/.venv-quant/bin/pip install gguf numpy
    /work/.venv-quant/bin/python crates/quant/tests/gen_vectors.py

Output is deterministic (fixed seed). Files written to tests/data:

    manifest.json            one entry per case: {"name", "type", "op", "elements",
                             "input", "expected"}; paths are relative to tests/data
    <name>.in / <name>.out   raw little-endian input / expected output:
                               op "dequantize": .in is block bytes, .out is f32
                               op "quantize":   .in is f32,         .out is block bytes

The Rust tests (tests/vectors.rs) compare their output bit for bit with `.out`.

gguf-py has no quantizers for the K-quants, Q8_1 or Q8_K. For those, set GGML_REF_DRIVER to a
binary built from tests/ggml_ref_driver.c against a ggml source tree (it calls ggml's own
quantize_row_*_ref); set GGML_REF_VERSION to a description of that tree for the manifest.
Without GGML_REF_DRIVER those cases are not generated (and the Rust test that expects them
fails, so do not commit such a partial set).
"""

import json
import os
import subprocess
import sys

import numpy as np

import gguf
from gguf import GGMLQuantizationType as T
from gguf import quants

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")
rng = np.random.default_rng(20240601)

# Byte offsets of f16 scale fields per format (see src/blocks.rs); random bytes there are
# replaced by sane f16 values so the expected output has no NaN/inf from garbage scales.
F16_FIELDS = {
    T.Q4_0: [0],
    T.Q4_1: [0, 2],
    T.Q5_0: [0],
    T.Q5_1: [0, 2],
    T.Q8_0: [0],
    T.Q2_K: [80, 82],
    T.Q3_K: [108],
    T.Q4_K: [0, 2],
    T.Q5_K: [0, 2],
    T.Q6_K: [208],
}


def sane_f16(n):
    """Random f16 values with magnitudes 2^-14 .. 2^1, random sign (plus a few subnormals)."""
    mag = np.exp2(rng.uniform(-14, 1, size=n)).astype(np.float32)
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    v = (mag * sign).astype(np.float16)
    if n > 3:
        v[1] = np.float16(6e-8)  # subnormal
        v[2] = np.float16(0.0)
    return v


cases = []


def write_case(name, qtype, op, elements, inp: bytes, expected: bytes):
    with open(os.path.join(OUT, name + ".in"), "wb") as f:
        f.write(inp)
    with open(os.path.join(OUT, name + ".out"), "wb") as f:
        f.write(expected)
    cases.append(
        {
            "name": name,
            "type": qtype.name,
            "op": op,
            "elements": int(elements),
            "input": name + ".in",
            "expected": name + ".out",
        }
    )


def dequant_case(qtype, n_blocks):
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    raw = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        raw[:, off : off + 2] = sane_f16(n_blocks).view(np.uint8).reshape(n_blocks, 2)
    out = quants.dequantize(raw, qtype).astype(np.float32)
    assert out.size == n_blocks * block_size
    write_case(
        "dequant_" + qtype.name.lower(),
        qtype,
        "dequantize",
        out.size,
        raw.tobytes(),
        out.astype("<f4").tobytes(),
    )


def quant_input(block_size, n_blocks):
    """Blocks of varied character: Gaussian at many scales, one-signed, zero, constant, ties,
    outliers, tiny and huge magnitudes."""
    blocks = []
    for b in range(n_blocks):
        kind = b % 10
        if kind == 0:
            x = np.zeros(block_size)
        elif kind == 1:
            x = np.full(block_size, rng.normal())
        elif kind == 2:
            x = np.abs(rng.normal(size=block_size)) + 0.5
        elif kind == 3:
            x = -np.abs(rng.normal(size=block_size)) * 3
        elif kind == 4:
            # tie in |max| between a negative and a later positive element (first one wins)
            x = rng.uniform(-1, 1, size=block_size)
            x[3] = -2.0
            x[block_size - 2] = 2.0
        elif kind == 5:
            x = rng.normal(size=block_size)
            x[rng.integers(block_size)] = 40.0  # outlier
        elif kind == 6:
            x = rng.normal(size=block_size) * 1e-6  # f16 scale underflows
        elif kind == 7:
            x = rng.normal(size=block_size) * 1e6  # f16 scales near/over the top
        else:
            x = rng.normal(size=block_size) * np.exp(rng.uniform(-5, 5))
        blocks.append(x)
    return np.concatenate(blocks).astype(np.float32)


def quant_case(qtype, n_blocks, extra=None):
    block_size, _ = gguf.GGML_QUANT_SIZES[qtype]
    x = quant_input(block_size, n_blocks)
    if extra is not None:
        x = np.concatenate([x, extra.astype(np.float32)])
    q = quants.quantize(x.reshape(1, -1), qtype)
    write_case(
        "quant_" + qtype.name.lower(),
        qtype,
        "quantize",
        x.size,
        x.astype("<f4").tobytes(),
        np.ascontiguousarray(q).view(np.uint8).tobytes(),
    )


def halves_block():
    # Q8_0: max 127 gives d = 1 exactly, so k + 0.5 hits round-half-away-from-zero.
    x = np.array([127.0] + [(k + 0.5) * (-1) ** k for k in range(31)], dtype=np.float32)
    return x


def float_bits_input():
    special = np.array(
        [0x00000000, 0x80000000, 0x7F800000, 0xFF800000, 0x7FC00000, 0xFFC00001, 0x7F800001,
         0x00000001, 0x807FFFFF, 0x7F7FFFFF, 0xFF7FFFFF, 0x3F808000, 0x3F818000, 0x3F80FFFF,
         0x3F807FFF, 0x477FE000, 0x477FF000, 0x477FEFFF, 0x38800000, 0x33800000, 0x33000000,
         0x33000001, 0x387FC000, 0x3F801000, 0x3F803000, 0x3F802000],
        dtype=np.uint32)
    rnd = rng.integers(0, 2**32, size=512, dtype=np.uint64).astype(np.uint32)
    # f32 values with f16/bf16 halfway patterns in the low bits
    ties = (rng.integers(0, 2**32, size=64, dtype=np.uint64).astype(np.uint32) & 0xFFFF0000) | 0x8000
    ties16 = (rng.integers(0x30000000, 0x47000000, size=64, dtype=np.uint64).astype(np.uint32) & 0xFFFFE000) | 0x1000
    normal = rng.normal(size=256).astype(np.float32).view(np.uint32)
    return np.concatenate([special, rnd, ties, ties16, normal]).view(np.float32)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        if f.endswith((".in", ".out")) or f == "manifest.json":
            os.remove(os.path.join(OUT, f))

    # dequantize: legacy formats, 32 blocks; K-quants, 8 blocks
    for t in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
        dequant_case(t, 32)
    for t in (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K):
        dequant_case(t, 8)

    # plain floats
    bits16 = np.concatenate([
        np.array([0x0000, 0x8000, 0x0001, 0x8001, 0x03FF, 0x0400, 0x3C00, 0x7BFF, 0xFBFF,
                  0x7C00, 0xFC00, 0x7E00, 0x7C01, 0xFE00, 0x7FFF], dtype=np.uint16),
        rng.integers(0, 2**16, size=1009, dtype=np.uint16),
    ])
    write_case("dequant_f16", T.F16, "dequantize", bits16.size, bits16.astype("<u2").tobytes(),
               quants.dequantize(bits16.view(np.uint8), T.F16).astype("<f4").tobytes())
    write_case("dequant_bf16", T.BF16, "dequantize", bits16.size, bits16.astype("<u2").tobytes(),
               quants.dequantize(bits16.view(np.uint8), T.BF16).astype("<f4").tobytes())
    fb = float_bits_input()
    write_case("dequant_f32", T.F32, "dequantize", fb.size, fb.astype("<f4").tobytes(),
               quants.dequantize(fb.view(np.uint8), T.F32).astype("<f4").tobytes())
    with np.errstate(over="ignore", invalid="ignore"):
        f16q = quants.quantize(fb, T.F16)
    write_case("quant_f16", T.F16, "quantize", fb.size, fb.astype("<f4").tobytes(),
               f16q.astype("<f2").view(np.uint8).tobytes())
    write_case("quant_bf16", T.BF16, "quantize", fb.size, fb.astype("<f4").tobytes(),
               quants.quantize(fb.reshape(1, -1), T.BF16).view(np.uint8).tobytes())
    write_case("quant_f32", T.F32, "quantize", fb.size, fb.astype("<f4").tobytes(),
               quants.quantize(fb, T.F32).astype("<f4").tobytes())

    # quantize: every format gguf-py can quantize (it has no K-quant quantizers)
    with np.errstate(over="ignore"):
        quant_case(T.Q8_0, 40, extra=halves_block())
        for t in (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1):
            quant_case(t, 40)

    # quantize with ggml's own reference quantizers (gguf-py lacks them)
    driver = os.environ.get("GGML_REF_DRIVER")
    if driver:
        with np.errstate(over="ignore"):
            for t, n_blocks in ((T.Q4_K, 20), (T.Q5_K, 20), (T.Q6_K, 20), (T.Q8_K, 20), (T.Q8_1, 40)):
                block_size = 256 if t != T.Q8_1 else 32
                x = quant_input(block_size, n_blocks)
                if t == T.Q8_1:
                    x = np.concatenate([x, halves_block()])  # round-half-away-from-zero
                q = subprocess.run([driver, ggml_name(t)], input=x.astype("<f4").tobytes(),
                                   capture_output=True, check=True).stdout
                assert len(q) == x.size // block_size * ggml_type_size(t), (t, len(q))
                write_case("quant_" + t.name.lower(), t, "quantize", x.size,
                           x.astype("<f4").tobytes(), q)
        for i, t in enumerate((T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K)):
            bulk_case(t, 1024, 1000 + i, driver)
        bulk_case(T.Q8_1, 4096, 1010, driver)
    else:
        print("GGML_REF_DRIVER not set: no K-quant/Q8_1/Q8_K quantize vectors", file=sys.stderr)

    with np.errstate(over="ignore"):
        for i, t in enumerate((T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0)):
            bulk_case(t, 4096, 2000 + i)

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(
            {
                "generator": "tests/gen_vectors.py",
                "gguf_version": gguf.__version__ if hasattr(gguf, "__version__") else pkg_version(),
                "numpy_version": np.__version__,
                "ggml_reference": os.environ.get("GGML_REF_VERSION") if driver else None,
                "cases": cases,
                "bulk_cases": bulk_cases,
            },
            f,
            indent=1,
        )
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"wrote {len(cases)} cases, {total} bytes to {OUT}", file=sys.stderr)


# ---- large hashed cases -------------------------------------------------------------------
# Inputs too big to commit are regenerated by the Rust test with the same integer PRNG; only a
# 64-bit FNV-1a hash of each group of 64 output blocks is stored. Keep in sync with
# `bulk_input` in tests/vectors.rs.

MASK64 = (1 << 64) - 1


def bulk_input(block_size, n_blocks, seed):
    s = seed
    def nxt():
        nonlocal s
        s ^= s >> 12
        s ^= (s << 25) & MASK64
        s ^= s >> 27
        return (s * 0x2545F4914F6CDD1D) & MASK64

    out = np.empty(n_blocks * block_size, dtype=np.float32)
    for b in range(n_blocks):
        k = (nxt() >> 59) - 16
        scale = np.float32(2.0 ** k)
        kind = b % 4
        off = np.float32((0.0, 0.0, 0.5, -0.75)[kind])
        o = (nxt() >> 32) % block_size if kind == 1 else -1
        r = [nxt() >> 40 for _ in range(2 * block_size)]
        u1 = np.array(r[0::2], dtype=np.float32) * np.float32(2.0 ** -24)
        u2 = np.array(r[1::2], dtype=np.float32) * np.float32(2.0 ** -24)
        x = (((u1 + u2) - np.float32(1.0)) + off) * scale
        if o >= 0:
            x[o] = x[o] * np.float32(8.0)
        if b % 16 == 15:
            x[:] = 0
        out[b * block_size:(b + 1) * block_size] = x
    return out


def fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for byte in data:
        h ^= byte
        h = (h * 0x100000001B3) & MASK64
    return h


GROUP_BLOCKS = 64
bulk_cases = []


def bulk_case(t, n_blocks, seed, driver=None):
    block_size = 256 if t in (T.Q4_K, T.Q5_K, T.Q6_K, T.Q8_K) else 32
    x = bulk_input(block_size, n_blocks, seed)
    if driver:
        q = subprocess.run([driver, ggml_name(t)], input=x.astype("<f4").tobytes(),
                           capture_output=True, check=True).stdout
    else:
        q = np.ascontiguousarray(quants.quantize(x.reshape(1, -1), t)).view(np.uint8).tobytes()
    ts = ggml_type_size(t)
    assert len(q) == n_blocks * ts
    step = GROUP_BLOCKS * ts
    hashes = [f"{fnv1a64(q[i:i + step]):016x}" for i in range(0, len(q), step)]
    bulk_cases.append({"type": t.name, "op": "quantize", "blocks": n_blocks, "seed": seed,
                       "group_blocks": GROUP_BLOCKS, "fnv1a64": hashes})


def ggml_name(t):
    return t.name.replace("_K", "_K").lower().replace("_k", "_K")


def ggml_type_size(t):
    # gguf-py 0.19 lists Q8_1 as 40 bytes (an old layout); ggml's block_q8_1 is 36.
    return 36 if t == T.Q8_1 else gguf.GGML_QUANT_SIZES[t][1]


def pkg_version():
    from importlib.metadata import version

    return version("gguf")


if __name__ == "__main__":
    main()
