"""What tests/real_tokenizers.rs checks beyond scripts/llamacpp-reference.py's fixtures: llama.cpp's
tokenization of the tokenizer corpus under other BPE pre-tokenizer types, and Qwen's chat template
rendered by llama.cpp for conversations with system prompts and several turns. Writes
tests/fixtures/real/tokenizer_variants.llamacpp.json.

    python3 scripts/tokenizer-reference.py [QWEN_GGUF]

Only Qwen2.5-Coder-0.5B's vocabulary is at hand, so each pre-tokenizer type is tried on it: for
each type a tiny llama GGUF is written (one layer, hidden size 64, random weights; only its
tokenizer matters) whose tokenizer metadata is Qwen's with `tokenizer.ggml.pre` replaced, llama.cpp
(xllamacpp, the same package as scripts/llamacpp-reference.py) loads it, and its server's
/tokenize gives the ids of every corpus string (no BOS, special tokens parsed). The test builds
the same tokenizer from Qwen's file with the pre-tokenizer swapped and compares. The chat
templates come from the server's /apply-template on Qwen's own file.

Needs: pip install xllamacpp==2026.10.11549 gguf==0.19.0 numpy
"""
import json
import os
import sys
import tempfile
import urllib.request

import numpy as np
import gguf
import xllamacpp

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "real")
PRE_TYPES = ["default", "gpt-2", "smollm", "qwen2", "llama3", "deepseek-llm", "deepseek-coder", "deepseek-v3"]
HIDDEN = 64


def tokenizer_fields(path):
    """Qwen's tokenizer.ggml.* values (the chat template left out)."""
    r = gguf.GGUFReader(path)
    out = {}
    for key, field in r.fields.items():
        if key.startswith("tokenizer.ggml."):
            out[key] = (field.contents(), field.types)
    return out


def write_tiny(path, fields, pre):
    w = gguf.GGUFWriter(path, "llama")
    n_vocab = len(fields["tokenizer.ggml.tokens"][0])
    w.add_block_count(1)
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(HIDDEN)
    w.add_head_count(1)
    w.add_head_count_kv(1)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_rope_dimension_count(HIDDEN)
    w.add_vocab_size(n_vocab)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(fields["tokenizer.ggml.tokens"][0])
    w.add_token_types(fields["tokenizer.ggml.token_type"][0])
    w.add_token_merges(fields["tokenizer.ggml.merges"][0])
    for key, setter in [
        ("tokenizer.ggml.bos_token_id", w.add_bos_token_id),
        ("tokenizer.ggml.eos_token_id", w.add_eos_token_id),
        ("tokenizer.ggml.padding_token_id", w.add_pad_token_id),
        ("tokenizer.ggml.add_bos_token", w.add_add_bos_token),
    ]:
        if key in fields:
            setter(fields[key][0])
    rng = np.random.default_rng(0)
    t = lambda *shape: (rng.standard_normal(shape) * 0.02).astype(np.float16)
    w.add_tensor("token_embd.weight", t(n_vocab, HIDDEN))
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    w.add_tensor("blk.0.attn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    w.add_tensor("blk.0.ffn_norm.weight", np.ones(HIDDEN, dtype=np.float32))
    for name in ["attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"]:
        w.add_tensor(f"blk.0.{name}.weight", t(HIDDEN, HIDDEN))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# Conversations whose rendering exercises the template's branches: a system prompt of the user's,
# several turns, and text with newlines, code and other scripts.
CONVERSATIONS = {
    "system": [
        {"role": "system", "content": "You are a terse assistant. Answer in one word."},
        {"role": "user", "content": "Capital of Italy?"},
    ],
    "turns": [
        {"role": "user", "content": "Hi!"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "Say it again, in French."},
    ],
    "system-turns-code": [
        {"role": "system", "content": "You write Python.\nKeep it short."},
        {"role": "user", "content": "Reverse a list."},
        {"role": "assistant", "content": "```python\ndef rev(xs):\n    return xs[::-1]\n```"},
        {"role": "user", "content": "Now in place, please. 谢谢 🙂"},
    ],
}


class Server:
    """A llama.cpp server on a GGUF file, asked over its HTTP API."""

    def __init__(self, path):
        p = xllamacpp.CommonParams()
        p.model.path = path
        p.n_ctx = 512
        p.cpuparams.n_threads = 1
        p.warmup = False
        self.server = xllamacpp.Server(p)
        self.base = self.server.listening_address

    def post(self, route, body):
        req = urllib.request.Request(self.base + route, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
        return json.loads(urllib.request.urlopen(req).read())

    def tokenize(self, text):
        return self.post("/tokenize", {"content": text, "add_special": False,
                                       "parse_special": True})["tokens"]


def tokenize_all(path, texts):
    server = Server(path)
    out = [server.tokenize(text) for text in texts]
    del server
    return out


def templates(path):
    server = Server(path)
    out = []
    for cid, messages in CONVERSATIONS.items():
        prompt = server.post("/apply-template", {"messages": messages})["prompt"]
        out.append({"id": cid, "messages": messages, "rendered_prompt": prompt})
    del server
    return out


def main():
    qwen = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
        ROOT, "models", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf")
    with open(os.path.join(FIXTURES, "tokenizer_corpus.json"), encoding="utf-8") as f:
        corpus = json.load(f)["strings"]
    fields = tokenizer_fields(qwen)
    result = {
        "provenance": {
            "generator": "scripts/tokenizer-reference.py",
            "llama_cpp": {"package": "xllamacpp", "version": xllamacpp.__version__
                          if hasattr(xllamacpp, "__version__") else "2026.10.11549"},
            "vocabulary": os.path.basename(qwen),
            "tokenize": "the server's /tokenize with add_special = false, parse_special = true",
            "templates": "the server's /apply-template on the vocabulary's own file",
        },
        "pre_types": {},
        "templates": templates(qwen),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for pre in PRE_TYPES:
            path = os.path.join(tmp, f"{pre}.gguf")
            write_tiny(path, fields, pre)
            ids = tokenize_all(path, [s["text"] for s in corpus])
            result["pre_types"][pre] = [{"id": s["id"], "ids": i} for s, i in zip(corpus, ids)]
            print(pre, "done", file=sys.stderr)
    with open(os.path.join(FIXTURES, "tokenizer_variants.llamacpp.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
