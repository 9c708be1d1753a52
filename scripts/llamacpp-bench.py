"""llama.cpp's speed on Wick's benchmark, through llama-cpp-python: `wick bench
--compare-llamacpp` runs this so the peer is measured in the same run as Wick.

    python3 scripts/llamacpp-bench.py MODEL.gguf PROMPT_FILE DECODE RUNS THREADS[,THREADS...]

Prints one JSON object: the package version and, per thread count, the median prefill speed on
the prompt (raw text, special tokens parsed, no BOS added: as `wick bench` feeds it) and the
median greedy decode speed over DECODE tokens.
"""
import json
import statistics
import sys
import time

import llama_cpp


def main():
    model, prompt_file, decode, runs, threads = sys.argv[1:6]
    decode, runs = int(decode), max(1, int(runs))
    with open(prompt_file, encoding="utf-8") as f:
        prompt = f.read()
    rows = []
    for t in (int(x) for x in threads.split(",")):
        llm = llama_cpp.Llama(
            model_path=model, n_threads=t, n_threads_batch=t, n_ctx=1024, n_batch=512, verbose=False
        )
        ids = llm.tokenize(prompt.encode("utf-8"), add_bos=False, special=True)
        prefill, decoded = [], []
        for _ in range(runs):
            llm.reset()
            t0 = time.perf_counter()
            llm.eval(ids)
            prefill.append(len(ids) / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            for _ in range(decode):
                llm.eval([int(llm.scores[llm.n_tokens - 1].argmax())])
            decoded.append(decode / (time.perf_counter() - t0))
        rows.append(
            {
                "threads": t,
                "prompt_tokens": len(ids),
                "prefill": statistics.median(prefill),
                "decode": statistics.median(decoded),
            }
        )
        del llm
    print(json.dumps({"version": llama_cpp.__version__, "rows": rows}))


if __name__ == "__main__":
    main()
