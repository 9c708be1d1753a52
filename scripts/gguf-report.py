"""Describes GGUF files in Markdown: the metadata an implementation needs and the tensor types.

    ~/.cache/wick/venv-ref/bin/python scripts/gguf-report.py models/*.gguf

Needs the `gguf` package (pip install gguf, in a venv outside the repo). docs/real-models.md was
written from its output.
"""
import collections
import hashlib
import os
import re
import sys

import numpy as np
from gguf import GGUFReader, GGUFValueType

TOKEN_TYPES = {1: "normal", 2: "unknown", 3: "control", 4: "user-defined", 5: "unused", 6: "byte"}
BIG_ARRAYS = {"tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type",
              "tokenizer.ggml.merges"}


def value(field):
    v = field.contents()
    if isinstance(v, float):
        return float(np.float32(v))
    return v


def show(v):
    if isinstance(v, str):
        return repr(v) if len(v) < 80 else f"<{len(v)} chars>"
    if isinstance(v, float):
        return f"{v:g}"
    return repr(v)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tok(t):
    """A token for a table: its repr, with runs of one character written as count × char."""
    if len(t) > 2 and len(set(t)) == 1:
        return f"`{t[0]!r}`×{len(t)}"
    return f"`{t!r}`"


def layers_text(layers, n_layer):
    if layers == [None]:
        return "—"
    if len(layers) == n_layer:
        return f"all {n_layer}"
    return ", ".join(str(x) for x in layers)


def report(path):
    r = GGUFReader(path)
    f = {k: fld for k, fld in r.fields.items()}
    arch = value(f["general.architecture"])
    n_layer = value(f[f"{arch}.block_count"])
    out = []
    p = out.append
    p(f"## {os.path.basename(path)}\n")
    p(f"- size: {os.path.getsize(path):,} bytes; sha256 `{sha256(path)}`")
    for k in ("general.name", "general.architecture", "general.file_type",
              "general.quantization_version", "general.license"):
        if k in f:
            p(f"- `{k}` = {show(value(f[k]))}")
    p("")
    p(f"### `{arch}.*`\n")
    p("| key | value |\n|---|---|")
    for k, fld in f.items():
        if k.startswith(arch + "."):
            p(f"| `{k}` | {show(value(fld))} |")
    p("")
    p("### Tokenizer\n")
    p("| key | value |\n|---|---|")
    tokens = value(f["tokenizer.ggml.tokens"])
    for k, fld in f.items():
        if not k.startswith("tokenizer.") or k in BIG_ARRAYS or k == "tokenizer.chat_template":
            continue
        v = value(fld)
        extra = f" (`{tokens[v]!r}`)" if k.endswith("_token_id") and 0 <= v < len(tokens) else ""
        p(f"| `{k}` | {show(v)}{extra} |")
    p(f"| vocab size (`tokenizer.ggml.tokens`) | {len(tokens):,} |")
    if "tokenizer.ggml.merges" in f:
        p(f"| merges | {len(f['tokenizer.ggml.merges'].data):,} |")
    p(f"| `tokenizer.ggml.scores` | {'present' if 'tokenizer.ggml.scores' in f else 'absent'} |")
    has_template = "tokenizer.chat_template" in f
    template = value(f["tokenizer.chat_template"]) if has_template else None
    p(f"| `tokenizer.chat_template` | {f'present ({len(template)} chars)' if template else 'absent'} |")
    long_lists = []
    if "tokenizer.ggml.token_type" in f:
        types = collections.Counter(value(f["tokenizer.ggml.token_type"]))
        p("| token types | " + ", ".join(f"{TOKEN_TYPES.get(t, t)} {n:,}" for t, n in sorted(types.items())) + " |")
        tt = value(f["tokenizer.ggml.token_type"])
        for kind in (3, 4):
            ids = [i for i, t in enumerate(tt) if t == kind]
            if not ids:
                continue
            named = [i for i in ids if not re.fullmatch(r"<unused\d+>", tokens[i])]
            unused = len(ids) - len(named)
            shown = ", ".join(f"{i} {tok(tokens[i])}" for i in named[:24])
            more = f" … ({len(named) - 24} more, listed below)" if len(named) > 24 else ""
            tail = f"; plus {unused:,} `<unusedN>` ({ids[0]}…{ids[-1]})" if unused else ""
            p(f"| {TOKEN_TYPES[kind]} tokens | {shown}{more}{tail} |")
            if len(named) > 24:
                long_lists.append((TOKEN_TYPES[kind], named))
    p("")
    for kind, ids in long_lists:
        p(f"<details><summary>all {len(ids)} {kind} tokens (id, Python repr)</summary>\n")
        p(", ".join(f"{i} {tok(tokens[i])}" for i in ids))
        p("\n</details>\n")
    if has_template:
        p("<details><summary>chat template</summary>\n\n```jinja")
        p(template)
        p("```\n</details>\n")

    p("### Tensors\n")
    by_type = collections.Counter(t.tensor_type.name for t in r.tensors)
    bytes_by_type = collections.Counter()
    for t in r.tensors:
        bytes_by_type[t.tensor_type.name] += int(t.n_bytes)
    p("| GGML type | tensors | bytes |\n|---|---|---|")
    for ty, n in by_type.most_common():
        p(f"| {ty} | {n} | {bytes_by_type[ty]:,} |")
    p(f"| total | {len(r.tensors)} | {sum(bytes_by_type.values()):,} |")
    p("")
    p("Shapes are GGUF `ne` order: `[ne0, ne1]`, ne0 = the row length (input features); "
      "PyTorch's shape is the reverse.\n")
    roles = collections.OrderedDict()
    for t in r.tensors:
        m = re.fullmatch(r"blk\.(\d+)\.(.+)", t.name)
        layer, role = (int(m.group(1)), m.group(2)) if m else (None, t.name)
        key = (role, t.tensor_type.name, tuple(int(x) for x in t.shape))
        roles.setdefault(key, []).append(layer)
    p("| tensor | type | shape | layers |\n|---|---|---|---|")
    for (role, ty, shape), layers in sorted(roles.items(), key=lambda kv: (kv[0][0], kv[0][1])):
        name = role if layers == [None] else f"blk.N.{role}"
        p(f"| `{name}` | {ty} | {list(shape)} | {layers_text(sorted(layers), n_layer)} |")
    p("")
    if "output.weight" not in {t.name for t in r.tensors}:
        p("No `output.weight`: the output head is tied to `token_embd.weight`.\n")

    norms = collections.OrderedDict()
    for t in r.tensors:
        if "norm" in t.name and t.tensor_type.name == "F32":
            role = re.sub(r"^blk\.\d+\.", "blk.N.", t.name)
            norms.setdefault(role, []).append(np.asarray(t.data, dtype=np.float32).ravel())
    p("Norm weights (all layers together):\n")
    p("| tensor | min | mean | max | share < 0.5 |\n|---|---|---|---|---|")
    for role, parts in norms.items():
        a = np.concatenate(parts)
        p(f"| `{role}` | {a.min():.4g} | {a.mean():.4g} | {a.max():.4g} | {(a < 0.5).mean():.1%} |")
    p("")
    return "\n".join(out)


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    print("\n".join(report(path) for path in sys.argv[1:]))


if __name__ == "__main__":
    main()
