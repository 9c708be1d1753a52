#!/usr/bin/env python3
"""Write tests/fixtures/trained/reference.json: what Hugging Face transformers computes for a
model folder that `wick train` wrote, so tests/train.rs can check Wick (natively and in wasm)
against an outside reference: the prompt's ids (HF tokenizers' own encoder), the f32 logits of
its last position, and 24 greedy tokens (the end-of-text token does not stop them).

Not run by CI. The folder in tests/fixtures/trained/ was made, from the repository root, with

    cargo run --release -- train --corpus tests/fixtures/trained/corpus.txt \
        --out tests/fixtures/trained --layers 2 --dim 32 --heads 4 --kv-heads 2 \
        --context 64 --steps 400 --batch 8 --lr 0.01 --vocab 384 --seed 3

and this script run with the Python of scripts/make_fixtures.py (torch, transformers):

    ~/.cache/wick/venv-fixtures/bin/python scripts/train_reference.py tests/fixtures/trained

Greedy steps whose top two logits are closer than 1e-3 are refused (a near-tie would make
the comparison depend on rounding); the smallest margin is printed and stored.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
import transformers
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

PROMPT = "The Senate and House of Representatives"
GREEDY_TOKENS = 24


def main() -> None:
    folder = Path(sys.argv[1])
    torch.manual_seed(0)
    torch.set_num_threads(1)
    tok = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    ids = tok(PROMPT, add_special_tokens=False)["input_ids"]
    seq = list(ids)
    margins = []
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0, -1]
        greedy = []
        for _ in range(GREEDY_TOKENS):
            last = model(torch.tensor([seq])).logits[0, -1]
            top = torch.topk(last, 2).values
            margins.append(float(top[0] - top[1]))
            nxt = int(torch.argmax(last))
            greedy.append(nxt)
            seq.append(nxt)
    if min(margins) < 1e-3:
        sys.exit(f"a near-tie in the greedy continuation (margin {min(margins):.2e}): train another seed")
    out = {
        "transformers": transformers.__version__,
        "prompt": PROMPT,
        "prompt_ids": ids,
        "logits": [float(v) for v in logits],
        "greedy_ids": greedy,
        "greedy_text": tok.decode(greedy),
        "smallest_greedy_margin": min(margins),
    }
    (folder / "reference.json").write_text(json.dumps(out, indent=1) + "\n")
    print(f"{len(ids)} prompt ids, {len(out['logits'])} logits; greedy: {out['greedy_text']!r}; "
          f"smallest top-2 margin {min(margins):.3f}")


if __name__ == "__main__":
    main()
