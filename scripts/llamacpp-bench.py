"""llama.cpp's speed on Wick's benchmark: `wick bench --compare-llamacpp` runs this so the peer
is measured in the same run as Wick, on the same prompt tokens.

    python3 scripts/llamacpp-bench.py MODEL.gguf PROMPTS.json DECODE RUNS THREADS[,THREADS...]

PROMPTS.json holds a list of prompts, each a list of token ids (Wick's tokenization, fed as they
are: no BOS added). Uses xllamacpp (llama.cpp's server, prebuilt on PyPI: pip install xllamacpp)
when it is installed, else llama-cpp-python; WICK_LLAMACPP=xllamacpp or =llama-cpp-python picks
one. Prints one JSON object: the package and its version, the process's peak RSS and, per thread
count and prompt, the min/median/max prefill speed on the prompt and greedy decode speed over
DECODE tokens after it.
"""
import importlib.util
import json
import os
import resource
import statistics
import sys
import time


def spread(values):
    """min, median and max of one measurement's runs."""
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def xllamacpp_rows(model, prompts, decode, runs, threads):
    """llama.cpp's own timings (the server's prompt_per_second and predicted_per_second)."""
    import xllamacpp as xlc

    rows = []
    for t in threads:
        p = xlc.CommonParams()
        p.model.path = model
        p.n_parallel = 1
        p.n_ctx = max(len(ids) for ids in prompts) + decode + 16
        p.n_batch = 512
        p.cpuparams.n_threads = t
        p.cpuparams_batch.n_threads = t
        p.port = 0  # the server also listens on a free loopback port; it is not used
        server = xlc.Server(p)
        for ids in prompts:
            prefill, decoded = [], []
            for _ in range(runs):
                out = server.handle_completions({
                    "prompt": ids, "n_predict": decode, "temperature": 0.0, "top_k": 1,
                    "ignore_eos": True, "cache_prompt": False,
                })
                timings = out.get("timings") if isinstance(out, dict) else None
                if not timings:
                    sys.exit(f"xllamacpp answered without timings: {json.dumps(out)[:500]}")
                prefill.append(timings["prompt_per_second"])
                decoded.append(timings["predicted_per_second"])
            rows.append({
                "threads": t,
                "prompt_tokens": len(ids),
                "prefill": spread(prefill),
                "decode": spread(decoded),
            })
        del server
    return "xllamacpp", xlc.__version__, rows


def llama_cpp_python_rows(model, prompts, decode, runs, threads):
    """Wall-clock timings of llama-cpp-python's eval calls."""
    import llama_cpp

    rows = []
    for t in threads:
        llm = llama_cpp.Llama(
            model_path=model, n_threads=t, n_threads_batch=t,
            n_ctx=max(len(ids) for ids in prompts) + decode + 16, n_batch=512, verbose=False,
        )
        for ids in prompts:
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
            rows.append({
                "threads": t,
                "prompt_tokens": len(ids),
                "prefill": spread(prefill),
                "decode": spread(decoded),
            })
        del llm
    return "llama-cpp-python", llama_cpp.__version__, rows


def main():
    model, prompts_file, decode, runs, threads = sys.argv[1:6]
    decode, runs = int(decode), max(1, int(runs))
    threads = [int(x) for x in threads.split(",")]
    with open(prompts_file, encoding="utf-8") as f:
        prompts = json.load(f)
    choice = os.environ.get("WICK_LLAMACPP")
    if choice is None:
        choice = "xllamacpp" if importlib.util.find_spec("xllamacpp") else "llama-cpp-python"
    if choice == "xllamacpp":
        package, version, rows = xllamacpp_rows(model, prompts, decode, runs, threads)
    elif choice == "llama-cpp-python":
        package, version, rows = llama_cpp_python_rows(model, prompts, decode, runs, threads)
    else:
        sys.exit(f"WICK_LLAMACPP={choice}: expected xllamacpp or llama-cpp-python")
    # ru_maxrss is in KiB on Linux.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"package": package, "version": version, "rows": rows, "peak_rss": peak}))


if __name__ == "__main__":
    main()
