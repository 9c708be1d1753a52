#!/usr/bin/env python3
"""Gemma 3 270M's exact logits: transformers' Gemma3ForCausalLM on the GGUF's own weights.

    ~/.cache/wick/venv-fixtures/bin/python scripts/transformers-reference.py

Dequantizes every tensor of models/gemma-3-270m-q4_k_m.gguf to float32 (gguf-py), maps llama.cpp's
names back to transformers' (norm weights minus 1: llama.cpp's converter stored 1 + w), builds
the config from the GGUF metadata plus the values llama.cpp's gemma3 loader supplies (every
sixth layer global, sliding layers at rope base 10 000, attention scale 1/sqrt(head_dim)), and
writes tests/fixtures/real/gemma3-270m.transformers.json: for a few prompts of
tests/fixtures/real/gemma3-270m.llamacpp.json (their llama.cpp token ids), the float32 eager
forward's top-10 log-probabilities at the last position. That is the model's own arithmetic on
the quantized file's values, free of any runtime's rounding: Wick's f32 path must give it, and
Wick's kernels and llama.cpp both land near it.

Needs the fixtures venv (scripts/fixtures-requirements.txt) and scripts/fetch-models.sh gemma3-270m.
Deterministic: one thread, eager attention, no timestamps.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from pathlib import Path

import gguf
import numpy as np
import torch
import transformers
from gguf.quants import dequantize
from transformers import AutoModelForCausalLM, Gemma3TextConfig

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "gemma-3-270m-q4_k_m.gguf"
LLAMACPP = ROOT / "tests" / "fixtures" / "real" / "gemma3-270m.llamacpp.json"
OUT = ROOT / "tests" / "fixtures" / "real" / "gemma3-270m.transformers.json"

# Short prompts of three kinds, the 850-token one (past the 512-token window), and code-python
# 23 tokens into llama.cpp's continuation, where llama.cpp and Wick pick different tokens.
CASES = [("prose", 0), ("code-python", 0), ("chinese", 0), ("long", 0), ("code-python", 23)]

ROLES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_output": "self_attn.o_proj",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
    "post_ffw_norm": "post_feedforward_layernorm",
}


def field(reader: gguf.GGUFReader, key: str):
    """A scalar metadata value."""
    f = reader.fields[key]
    return f.parts[f.data[0]][0].item()


def build(reader: gguf.GGUFReader) -> torch.nn.Module:
    """Gemma3ForCausalLM with the file's values in float32."""
    k = lambda name: field(reader, f"gemma3.{name}")  # noqa: E731
    head_dim = k("attention.key_length")
    config = Gemma3TextConfig(
        vocab_size=len(reader.fields["tokenizer.ggml.tokens"].data),
        hidden_size=k("embedding_length"),
        intermediate_size=k("feed_forward_length"),
        num_hidden_layers=k("block_count"),
        num_attention_heads=k("attention.head_count"),
        num_key_value_heads=k("attention.head_count_kv"),
        head_dim=head_dim,
        max_position_embeddings=k("context_length"),
        rms_norm_eps=k("attention.layer_norm_rms_epsilon"),
        sliding_window=k("attention.sliding_window"),
        sliding_window_pattern=6,
        query_pre_attn_scalar=head_dim,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": k("rope.freq_base")},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
        tie_word_embeddings=True,
    )
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    state = {}
    for t in reader.tensors:
        data = dequantize(t.data, t.tensor_type).astype(np.float32)
        if t.name.endswith("norm.weight"):
            data = data - np.float32(1.0)
        if t.name == "token_embd.weight":
            name = "model.embed_tokens.weight"
        elif t.name == "output_norm.weight":
            name = "model.norm.weight"
        else:
            _, layer, role, _ = t.name.split(".")
            name = f"model.layers.{layer}.{ROLES[role]}.weight"
        state[name] = torch.from_numpy(np.ascontiguousarray(data))
    state["lm_head.weight"] = state["model.embed_tokens.weight"]
    model.load_state_dict(state, strict=True)
    return model.eval()


def main() -> None:
    torch.set_num_threads(1)
    transformers.logging.set_verbosity_error()
    sha = hashlib.sha256(MODEL.read_bytes()).hexdigest()
    model = build(gguf.GGUFReader(MODEL))
    runs = {r["id"]: r for r in json.loads(LLAMACPP.read_text())["greedy"]}
    cases = []
    for run_id, after in CASES:
        run = runs[run_id]
        ids = run["prompt_ids"] + run["generated_ids"][:after]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids]), use_cache=False).logits[0, -1]
        logprobs = torch.log_softmax(logits.double(), -1)
        top = torch.topk(logprobs, 10)
        cases.append({
            "id": run_id if after == 0 else f"{run_id}+{after}",
            "ids": ids,
            "top": [[int(i), round(float(v), 6)] for v, i in zip(top.values, top.indices)],
        })
        print(cases[-1]["id"], cases[-1]["top"][:3])
    out = {
        "provenance": {
            "generator": "scripts/transformers-reference.py",
            "model": MODEL.name,
            "sha256": sha,
            "transformers": transformers.__version__,
            "torch": torch.__version__,
            "gguf": importlib.metadata.version("gguf"),
            "what": "float32 eager Gemma3ForCausalLM on the GGUF's tensors dequantized to float32; "
                    "top-10 log-probabilities (log-softmax over the whole vocabulary) at the last "
                    "position of `ids` (llama.cpp's tokenization, BOS included)",
        },
        "cases": cases,
    }
    # One line per case, so the file reads (and diffs) case by case.
    body = ",\n".join(json.dumps(c) for c in cases)
    OUT.write_text(f'{{"provenance": {json.dumps(out["provenance"], indent=1)},\n"cases": [\n{body}\n]}}\n')


if __name__ == "__main__":
    main()
