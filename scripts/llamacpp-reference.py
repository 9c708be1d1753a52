"""llama.cpp's reference outputs for the real models, through xllamacpp (llama.cpp's server, built
for PyPI). Writes tests/fixtures/real/<model>.llamacpp.json; the tests read those files and never
need Python.

    python3 -m venv ~/.cache/wick/venv-ref && ~/.cache/wick/venv-ref/bin/pip install xllamacpp
    scripts/fetch-models.sh qwen2.5-coder-0.5b gemma3-270m qwen2.5-coder-1.5b
    ~/.cache/wick/venv-ref/bin/python scripts/llamacpp-reference.py [MODEL...]
    ~/.cache/wick/venv-ref/bin/python scripts/llamacpp-reference.py --near-ties [MODEL...]

For each model it records, with provenance:
- tokenizer: the ids llama.cpp gives each string of tests/fixtures/real/tokenizer_corpus.json,
  with the model's own special tokens added (BOS where the GGUF says so) and without, special
  tokens written in the text parsed in both; and, as user text is tokenized, unparsed.
- greedy: raw-prompt continuations (prompt ids, then GREEDY_TOKENS tokens with EOS ignored),
  each step with its top-N_PROBS logprobs, on one thread; the same run on two threads is
  compared and the result noted.
- chat (models with a chat template): greedy replies of up to CHAT_TOKENS tokens through the
  model's own template, with the rendered prompt, its ids, and logprobs.
Logprobs are llama.cpp's, from the full softmax of the raw logits (before any sampler).
"""
import datetime
import hashlib
import json
import os
import platform
import sys
import urllib.request

import xllamacpp as xlc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "real")

# name → (file in models/, whether to record chat replies)
MODELS = {
    "qwen2.5-coder-0.5b": ("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf", True),
    "gemma3-270m": ("gemma-3-270m-q4_k_m.gguf", False),
    "qwen2.5-coder-1.5b": ("qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", True),
    "smollm2-135m": ("SmolLM2-135M-Instruct.Q4_1.gguf", True),
}

GREEDY_TOKENS = 24
CHAT_TOKENS = 48
N_PROBS = 10
N_CTX = 2048
N_BATCH = 512
THREADS = 1
CHECK_THREADS = 2

with open(os.path.join(FIXTURES, "long_prompt.txt"), encoding="utf-8") as f:
    LONG_PROMPT = f.read()

PROMPTS = [
    ("prose", "The old lighthouse keeper climbed the stairs every evening, and"),
    ("code-python", 'def fibonacci(n):\n    """Return the n-th Fibonacci number."""\n'),
    ("code-js", "// Debounce: call fn at most once per wait milliseconds.\nfunction debounce(fn, wait) {\n"),
    ("list", "Steps to brew a good cup of tea:\n1."),
    ("json", '{"name": "Alice", "age": 30, "languages": ['),
    ("french", "La capitale de la France est"),
    ("chinese", "中国的首都是"),
    ("german", "Der schnellste Weg von Berlin nach München ist"),
    ("math", "Question: A farmer has 12 cows and buys 7 more. Then 5 cows are sold. "
             "How many cows does the farmer have now?\nAnswer:"),
    # Longer than Gemma's 512-token sliding window, so the window and the global layers differ.
    ("long", LONG_PROMPT),
    # More of each kind: a small model is often torn between two tokens early on, and a test
    # wants several runs that stay clear of near-ties for all 24 tokens.
    ("story", "Once upon a time, in a small village at the edge of a great forest, there lived"),
    ("science", "The first law of thermodynamics states that"),
    ("sequence", "Monday, Tuesday, Wednesday,"),
    ("fibonacci", "1, 1, 2, 3, 5, 8, 13, 21,"),
    ("sql", "-- Names and ages of all adult users, oldest first\nSELECT name, age FROM users WHERE"),
    ("html", "<!DOCTYPE html>\n<html>\n<head>\n  <title>My page</title>\n"),
    ("rust", "fn main() {\n    let numbers = vec![1, 2, 3, 4, 5];\n"),
    ("spanish", "Había una vez un pequeño pueblo en las montañas donde"),
    ("japanese", "日本の首都は東京です。東京は"),
    ("recipe", "Ingredients:\n- 2 cups flour\n- 1 cup sugar\n-"),
]

CHATS = [
    ("capital", "What is the capital of France?"),
    ("code", "Write a Python function that checks whether a string is a palindrome."),
    ("chinese", "什么是递归？请用一句话回答。"),
]


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


class Llama:
    """One llama.cpp server (in this process, listening on a loopback port) for one model."""

    def __init__(self, path, threads):
        p = xlc.CommonParams()
        p.model.path = path
        p.n_parallel = 1
        p.n_ctx = N_CTX
        p.n_batch = N_BATCH
        p.n_ubatch = N_BATCH
        p.cpuparams.n_threads = threads
        p.cpuparams_batch.n_threads = threads
        p.port = 0  # any free port on 127.0.0.1
        # Flash attention (llama.cpp's "auto" picks it on the CPU) accumulates in f16 and its
        # results change with the thread count past a few hundred tokens; without it they do not.
        p.flash_attn_type = xlc.llama_flash_attn_type.LLAMA_FLASH_ATTN_TYPE_DISABLED
        self.params = p
        self.server = xlc.Server(p)
        self.url = self.server.listening_address

    def http(self, path, body=None):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=600) as r:
            return json.loads(r.read())

    def tokenize(self, text, add_special, parse_special):
        r = self.http("/tokenize", {"content": text, "add_special": add_special,
                                    "parse_special": parse_special})
        return r["tokens"]

    def complete(self, prompt_ids, n):
        r = self.server.handle_completions({
            "prompt": prompt_ids, "n_predict": n, "temperature": 0.0, "top_k": 1,
            "n_probs": N_PROBS, "cache_prompt": False, "ignore_eos": True, "seed": 0,
        })
        return check(r)

    def chat(self, messages, n):
        r = self.server.handle_chat_completions({
            "messages": messages, "max_tokens": n, "temperature": 0.0, "top_k": 1,
            "logprobs": True, "top_logprobs": N_PROBS, "cache_prompt": False, "seed": 0,
        })
        return check(r)


def check(r):
    if not isinstance(r, dict) or "choices" not in r:
        sys.exit(f"llama.cpp answered with an error: {json.dumps(r)[:2000]}")
    return r


def steps(choice):
    """Each generated token with its logprob and the top N_PROBS (id, logprob, piece)."""
    out = []
    for s in choice["logprobs"]["content"]:
        out.append({
            "id": s["id"], "token": s["token"], "logprob": s["logprob"],
            "top": [[t["id"], t["logprob"], t["token"]] for t in s["top_logprobs"]],
        })
    return out


def near_ties(step_list, threshold=0.1):
    """Positions where the top two logprobs are closer than threshold."""
    ties = []
    for i, s in enumerate(step_list):
        if len(s["top"]) >= 2 and s["top"][0][1] - s["top"][1][1] < threshold:
            first, second = ({"id": t[0], "token": t[2], "logprob": t[1]} for t in s["top"][:2])
            ties.append({"position": i, "chosen": s["id"], "first": first, "second": second,
                         "gap": first["logprob"] - second["logprob"]})
    return ties


def greedy(llm, add_special):
    out = []
    for name, text in PROMPTS:
        ids = llm.tokenize(text, add_special=add_special, parse_special=True)
        r = llm.complete(ids, GREEDY_TOKENS)
        st = steps(r["choices"][0])
        if r["usage"]["prompt_tokens"] != len(ids):
            sys.exit(f"{name}: llama.cpp used {r['usage']['prompt_tokens']} prompt tokens, not {len(ids)}")
        out.append({"id": name, "prompt": text, "prompt_ids": ids,
                    "generated_ids": [s["id"] for s in st], "text": r["choices"][0]["text"],
                    "steps": st})
    return out


def compare_threads(a, b):
    """How two greedy runs (different thread counts) differ: tokens, and the largest logprob gap."""
    same, max_diff, first_diff = True, 0.0, []
    for x, y in zip(a, b):
        if x["generated_ids"] != y["generated_ids"]:
            same = False
            k = next(i for i, (p, q) in enumerate(zip(x["generated_ids"], y["generated_ids"])) if p != q)
            first_diff.append({"prompt": x["id"], "position": k})
        for s, t in zip(x["steps"], y["steps"]):
            if s["id"] != t["id"]:
                break
            max_diff = max(max_diff, abs(s["logprob"] - t["logprob"]))
    return {"threads": [THREADS, CHECK_THREADS], "same_tokens": same,
            "max_abs_logprob_diff_of_chosen_tokens": max_diff, "first_differences": first_diff}


def model_reference(name):
    file, with_chat = MODELS[name]
    path = os.path.join(ROOT, "models", file)
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run scripts/fetch-models.sh {name}")
    print(f"[reference] {name}: loading {file}", file=sys.stderr)
    llm = Llama(path, THREADS)
    props = llm.http("/props")
    add_bos = None  # filled from the first tokenization: does add_special add anything?

    corpus = json.load(open(os.path.join(FIXTURES, "tokenizer_corpus.json"), encoding="utf-8"))
    tokenizer = []
    for s in corpus["strings"]:
        with_special = llm.tokenize(s["text"], add_special=True, parse_special=True)
        without = llm.tokenize(s["text"], add_special=False, parse_special=True)
        unparsed = llm.tokenize(s["text"], add_special=False, parse_special=False)
        tokenizer.append({"id": s["id"], "text": s["text"], "add_special": with_special,
                          "no_add_special": without, "no_parse_special": unparsed})
        if add_bos is None:
            add_bos = len(with_special) > len(without)
    print(f"[reference] {name}: tokenized {len(tokenizer)} strings", file=sys.stderr)

    runs = greedy(llm, add_special=True)
    print(f"[reference] {name}: {len(runs)} greedy continuations on {THREADS} thread(s)", file=sys.stderr)

    chats = []
    if with_chat:
        for cid, question in CHATS:
            messages = [{"role": "user", "content": question}]
            rendered = llm.http("/apply-template", {"messages": messages})["prompt"]
            ids = llm.tokenize(rendered, add_special=True, parse_special=True)
            r = llm.chat(messages, CHAT_TOKENS)
            choice = r["choices"][0]
            st = steps(choice)
            if r["usage"]["prompt_tokens"] != len(ids):
                sys.exit(f"chat {cid}: llama.cpp used {r['usage']['prompt_tokens']} prompt tokens, "
                         f"not the {len(ids)} of the rendered template")
            chats.append({"id": cid, "messages": messages, "rendered_prompt": rendered,
                          "prompt_ids": ids, "generated_ids": [s["id"] for s in st],
                          "reply": choice["message"]["content"],
                          "finish_reason": choice["finish_reason"], "steps": st})
        print(f"[reference] {name}: {len(chats)} chat replies", file=sys.stderr)
    del llm

    print(f"[reference] {name}: the greedy runs again on {CHECK_THREADS} threads", file=sys.stderr)
    llm2 = Llama(path, CHECK_THREADS)
    runs2 = greedy(llm2, add_special=True)
    del llm2

    ties = {"greedy": {r["id"]: near_ties(r["steps"]) for r in runs},
            "chat": {c["id"]: near_ties(c["steps"]) for c in chats}}
    ties = {k: {i: t for i, t in v.items() if t} for k, v in ties.items()}

    version = xlc._version.get_versions()
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), platform.processor())
    dsp = props.get("default_generation_settings", {})
    return {
        "provenance": {
            "generator": "scripts/llamacpp-reference.py",
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "llama_cpp": {"package": "xllamacpp", "version": xlc.__version__,
                          "revision": version.get("full-revisionid"),
                          "build_info": dict(xlc.BUILD_INFO) if not callable(xlc.BUILD_INFO) else None,
                          "system_info": xlc.get_system_info().strip(),
                          "server_model_ftype": props.get("model_ftype")},
            "machine": {"cpu": cpu, "cores": os.cpu_count(), "os": platform.platform()},
            "model": {"name": name, "file": file, "sha256": sha256(path),
                      "size": os.path.getsize(path)},
            "parameters": {
                "threads": THREADS, "threads_batch": THREADS, "n_ctx": dsp.get("n_ctx", N_CTX),
                "n_batch": N_BATCH, "n_ubatch": N_BATCH,
                "flash_attn": "disabled (see tests/fixtures/real/README.md)",
                "kv_cache_type": "f16 (llama.cpp's default)",
                "sampling": {"temperature": 0.0, "top_k": 1, "seed": 0, "n_probs": N_PROBS,
                             "cache_prompt": False,
                             "greedy_ignore_eos": True, "chat_ignore_eos": False},
                "greedy_tokens": GREEDY_TOKENS, "chat_max_tokens": CHAT_TOKENS,
                "logprobs": "llama.cpp's n_probs: log-softmax of the raw logits over the whole "
                            "vocabulary, before any sampler",
                "tokenize": "the server's /tokenize; add_special = the model's BOS/EOS rules, "
                            "parse_special = special tokens written in the text become tokens",
                "greedy_prompts": "tokenized with add_special and parse_special, then sent as ids",
                "chat": "the server's own template (/apply-template), sent as messages",
            },
            "threads_check": compare_threads(runs, runs2),
        },
        "adds_bos": add_bos,
        "near_ties": ties,
        "tokenizer": tokenizer,
        "greedy": runs,
        "chat": chats,
    }


def dump(obj):
    """JSON with one line per step (the fixture stays readable and diffs stay small)."""
    placeholders = {}

    def shrink(o):
        if isinstance(o, dict):
            if "top" in o and "logprob" in o:
                key = f"@@{len(placeholders)}@@"
                placeholders[key] = json.dumps(o, ensure_ascii=False)
                return key
            return {k: shrink(v) for k, v in o.items()}
        if isinstance(o, list):
            if o and all(isinstance(x, int) for x in o):
                key = f"@@{len(placeholders)}@@"
                placeholders[key] = json.dumps(o)
                return key
            return [shrink(x) for x in o]
        return o

    text = json.dumps(shrink(obj), ensure_ascii=False, indent=1)
    for key, value in placeholders.items():
        text = text.replace(f'"{key}"', value, 1)
    return text + "\n"


def near_tie_tables(names):
    """Markdown tables of the near-ties in the written fixtures (for tests/fixtures/real/README.md)."""
    for name in names:
        path = os.path.join(FIXTURES, f"{name}.llamacpp.json")
        if not os.path.exists(path):
            continue
        ref = json.load(open(path, encoding="utf-8"))
        print(f"\n### {name}\n")
        print("| run | position | llama.cpp's pick (logprob) | runner-up (logprob) | gap |")
        print("|---|---|---|---|---|")
        for kind, runs in ref["near_ties"].items():
            for run, ties in runs.items():
                for t in ties:
                    f, s = t["first"], t["second"]
                    print(f"| {kind} `{run}` | {t['position']} | {f['id']} `{f['token']!r}` "
                          f"({f['logprob']:.4f}) | {s['id']} `{s['token']!r}` ({s['logprob']:.4f}) "
                          f"| {t['gap']:.4f} |")


def main():
    if sys.argv[1:2] == ["--near-ties"]:
        near_tie_tables(sys.argv[2:] or list(MODELS))
        return
    names = sys.argv[1:] or ["qwen2.5-coder-0.5b", "gemma3-270m", "qwen2.5-coder-1.5b"]
    for name in names:
        if name not in MODELS:
            sys.exit(f"unknown model {name!r} (known: {', '.join(MODELS)})")
    for name in names:
        ref = model_reference(name)
        out = os.path.join(FIXTURES, f"{name}.llamacpp.json")
        with open(out, "w", encoding="utf-8") as f:
            f.write(dump(ref))
        tc = ref["provenance"]["threads_check"]
        print(f"[reference] {name}: wrote {os.path.relpath(out, ROOT)}; 1 vs 2 threads: "
              f"same tokens {tc['same_tokens']}, max logprob diff "
              f"{tc['max_abs_logprob_diff_of_chosen_tokens']:.2e}", file=sys.stderr)


if __name__ == "__main__":
    main()
