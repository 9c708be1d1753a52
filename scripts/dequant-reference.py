"""Writes tests/fixtures/dequant.json: random GGML blocks of the types Wick's kernels run and
their values as llama.cpp's gguf-py (`gguf.quants.dequantize`) reads them, the outside
reference that `kernels::tests::dequantization_matches_gguf_py` checks Wick's dequantization
against.

    python3 -m venv ~/.cache/wick/venv-gguf && ~/.cache/wick/venv-gguf/bin/pip install gguf==0.19.0
    ~/.cache/wick/venv-gguf/bin/python scripts/dequant-reference.py

Every byte is random except the f16 scales, which are drawn small and finite (as real files hold
them).
"""
import importlib.metadata
import json
import os

import gguf
import numpy as np
from gguf import GGMLQuantizationType as T

# type: (blocks, byte offsets of the f16 scales in a block)
TYPES = {
    "Q4_1": (T.Q4_1, 3, [0, 2]),
    "Q5_0": (T.Q5_0, 4, [0]),
    "Q8_0": (T.Q8_0, 3, [0]),
    "Q4_K": (T.Q4_K, 3, [0, 2]),
    "Q6_K": (T.Q6_K, 3, [208]),
}


def main():
    rng = np.random.default_rng(20261202)
    version = importlib.metadata.version("gguf")
    out = {"generator": f"scripts/dequant-reference.py with gguf {version}", "types": {}}
    for name, (qtype, blocks, scales) in TYPES.items():
        block_len, block_bytes = gguf.GGML_QUANT_SIZES[qtype]
        raw = rng.integers(0, 256, size=(blocks, block_bytes), dtype=np.uint8)
        for b in range(blocks):
            for off in scales:
                d = np.float16(rng.uniform(-0.05, 0.05))
                raw[b, off:off + 2] = np.frombuffer(d.tobytes(), dtype=np.uint8)
        values = gguf.quants.dequantize(raw.reshape(-1), qtype).astype(np.float32).reshape(-1)
        assert values.size == blocks * block_len
        out["types"][name] = {
            "bytes": raw.tobytes().hex(),
            # f32 bit patterns: exact, and JSON-safe.
            "values": [int(v) for v in values.view(np.uint32)],
        }
    path = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "dequant.json")
    with open(path, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
