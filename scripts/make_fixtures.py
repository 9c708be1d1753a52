#!/usr/bin/env python3
"""Write the tiny reference models in tests/fixtures/hf/ that Wick's loaders are checked against.

Each folder holds one small random model of one architecture in the layouts Wick reads:

  config.json        what transformers' `save_pretrained` writes
  model.safetensors  HF tensor names, float16 (every weight is rounded to an f16 value first)
  model.gguf         the same weights the way llama.cpp's convert_hf_to_gguf.py lays them out
  reference.json     float32 logits of every position from the transformers forward pass

plus three MLX-quantized variants (the affine layout mlx_lm writes) with no GGUF. The weights
are f16-exact, so the float32 reference logits are exactly what a float32 forward over the
stored values must give; only summation order separates Wick's numbers from these.

Install (outside the repo; the PyPI torch wheel for Linux x86_64 is a CUDA build):

    python3 -m venv /work/venv-fixtures
    /work/venv-fixtures/bin/pip install -r scripts/fixtures-requirements.txt

`torch` from PyPI cannot be installed with `--no-deps` alone: it then fails to import with
"libcudart.so.13: cannot open shared object file", because libtorch links the CUDA runtime
even on a machine without a GPU. Either let pip pull the nvidia-* wheels (about 5 GB on
disk, under a minute on a fast mirror) as the requirements file does, or install a CPU-only
build of the same version from the PyTorch CPU wheel index and drop the nvidia-* lines.

Run from the repository root:

    /work/venv-fixtures/bin/python scripts/make_fixtures.py

The output is deterministic: fixed seeds, one CPU thread, no timestamps in any file.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path

import gguf
import numpy as np
import safetensors.numpy
import torch
import transformers
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    MistralConfig,
    MixtralConfig,
    Qwen2Config,
)

OUT = Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "hf"

# Fixed prompt: 12 ids below the tiny vocab of 64, long enough for a sliding window of 4 to matter.
TOKENS = [1, 17, 42, 5, 63, 28, 9, 33, 50, 2, 61, 14]

# Shared tiny dimensions.
VOCAB, HIDDEN, LAYERS, HEADS, KV_HEADS, FFN, MAX_POS = 64, 32, 2, 4, 2, 48, 64

LLAMA3_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    # 16 puts the wavelengths of head width 8 (6.3, 167, 4443, 118000) in the smoothed band and
    # above it, so every rotary frequency is changed by the scaling.
    "original_max_position_embeddings": 16,
}


def llama_dims(**extra) -> dict:
    """Keyword arguments shared by the Llama-like configs."""
    base = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        max_position_embeddings=MAX_POS,
        rms_norm_eps=1e-5,
        bos_token_id=1,
        eos_token_id=2,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
    )
    base.update(extra)
    return base


# Gemma 3: six layers, so llama.cpp's fixed pattern (every sixth layer global) has both kinds; a
# head width (16) that is not hidden / heads (8), as in the real models.
GEMMA_LAYERS, GEMMA_HEAD_DIM = 6, 16


def gemma3_dims(**extra) -> dict:
    """Keyword arguments shared by the Gemma 3 configs (transformers 5's per-layer-type rope)."""
    base = dict(
        vocab_size=VOCAB,
        hidden_size=HIDDEN,
        intermediate_size=FFN,
        num_hidden_layers=GEMMA_LAYERS,
        num_attention_heads=HEADS,
        num_key_value_heads=KV_HEADS,
        head_dim=GEMMA_HEAD_DIM,
        max_position_embeddings=MAX_POS,
        rms_norm_eps=1e-6,
        sliding_window=4,
        query_pre_attn_scalar=GEMMA_HEAD_DIM,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        rope_parameters={
            "full_attention": {"rope_type": "default", "rope_theta": 1000000.0},
            "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
        },
    )
    base.update(extra)
    return base


def gpt2_dims(**extra) -> dict:
    """Keyword arguments shared by the GPT-2 configs (n_inner stays None: 4 * n_embd, as llama.cpp assumes)."""
    base = dict(
        vocab_size=VOCAB,
        n_positions=MAX_POS,
        n_embd=HIDDEN,
        n_layer=LAYERS,
        n_head=HEADS,
        layer_norm_epsilon=1e-5,
        bos_token_id=0,
        eos_token_id=0,
    )
    base.update(extra)
    return base


@dataclass
class Fixture:
    """One folder: its config, which GGUF converter applies, and the check that its feature is live."""

    name: str
    config: transformers.PretrainedConfig
    gguf_arch: str | None  # llama.cpp architecture name; None: no GGUF (format cannot express it)
    notes: str
    # Same weights under this config must give logits that differ by more than 1e-3.
    contrast: transformers.PretrainedConfig | None = None
    contrast_label: str = ""


def fixtures() -> list[Fixture]:
    """Every architecture folder, in the order they are written."""
    return [
        Fixture(
            "llama2",
            LlamaConfig(**llama_dims(num_key_value_heads=HEADS)),
            "llama",
            "Llama 2 style: no GQA, untied lm_head, rope_theta 10000.",
        ),
        Fixture(
            "llama3",
            LlamaConfig(**llama_dims(rope_parameters=dict(LLAMA3_ROPE))),
            "llama",
            "Llama 3.1 style: GQA, rope_theta 500000 with llama3 rope scaling "
            "(original_max_position_embeddings 16 so every frequency is scaled).",
            contrast=LlamaConfig(**llama_dims(rope_parameters={"rope_type": "default", "rope_theta": 500000.0})),
            contrast_label="llama3 rope scaling vs none",
        ),
        Fixture(
            "smollm",
            LlamaConfig(**llama_dims(tie_word_embeddings=True)),
            "llama",
            "SmolLM style: Llama with GQA and tied embeddings (no lm_head tensor).",
        ),
        Fixture(
            "mistral",
            MistralConfig(**llama_dims(sliding_window=4)),
            "llama",
            "Mistral: GQA, sliding_window 4 (a query sees itself and the 3 keys before it).",
            contrast=MistralConfig(**llama_dims(sliding_window=None)),
            contrast_label="mistral sliding_window 4 vs none",
        ),
        Fixture(
            "mixtral",
            MixtralConfig(**llama_dims(num_local_experts=4, num_experts_per_tok=2)),
            "llama",
            "Mixtral: GQA, 4 experts, top-2 routing (softmax over all experts, then top-2 renormalised).",
        ),
        Fixture(
            "qwen2",
            Qwen2Config(**llama_dims(tie_word_embeddings=True, rms_norm_eps=1e-6,
                                     rope_parameters={"rope_type": "default", "rope_theta": 1000000.0})),
            "qwen2",
            "Qwen2: GQA, q/k/v biases, tied embeddings, rope_theta 1e6.",
        ),
        Fixture(
            "gpt2",
            GPT2Config(**gpt2_dims(activation_function="gelu_new")),
            "gpt2",
            "GPT-2: learned positions, LayerNorm with bias, fused c_attn, Conv1D [in, out] weights, "
            "gelu_new (tanh approximation), tied lm_head.",
        ),
        Fixture(
            "gpt2-relu",
            GPT2Config(**gpt2_dims(activation_function="relu")),
            None,
            "GPT-2 with activation_function relu. No GGUF: llama.cpp has no key for the activation.",
            contrast=GPT2Config(**gpt2_dims(activation_function="gelu_new")),
            contrast_label="relu vs gelu_new",
        ),
        Fixture(
            "llama-gelu",
            LlamaConfig(**llama_dims(hidden_act="gelu_pytorch_tanh")),
            None,
            "Llama with a gated GELU (gelu_pytorch_tanh) MLP. No GGUF: llama.cpp has no key for the activation.",
            contrast=LlamaConfig(**llama_dims()),
            contrast_label="gelu_pytorch_tanh vs silu",
        ),
        # Appended last: every fixture's seed is its place in this list.
        Fixture(
            "gemma3",
            Gemma3TextConfig(**gemma3_dims()),
            "gemma3",
            "Gemma 3: embeddings scaled by sqrt(hidden), RMSNorm with (1 + w) (the GGUF stores 1 + w, as "
            "llama.cpp's converter does), per-head q/k norms, post-attention and post-FFN norms, gated "
            "gelu_pytorch_tanh, head_dim 16 != hidden/heads, query_pre_attn_scalar 16; layers 0-4 slide "
            "(window 4, rope base 1e4) and layer 5 is global (rope base 1e6), llama.cpp's pattern 6; "
            "tied embeddings.",
            contrast=Gemma3TextConfig(**gemma3_dims(layer_types=["full_attention"] * GEMMA_LAYERS)),
            contrast_label="gemma3 sliding layers vs every layer global",
        ),
        Fixture(
            "gemma3-scaled",
            Gemma3TextConfig(**gemma3_dims(
                layer_types=["sliding_attention", "full_attention"] * (GEMMA_LAYERS // 2),
                query_pre_attn_scalar=24,
                final_logit_softcapping=3.0,
                rope_parameters={
                    "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                },
            )),
            None,
            "Gemma 3 with what config.json can say and llama.cpp's gemma3 loader cannot: layer_types "
            "alternating sliding/global, query_pre_attn_scalar 24 (not head_dim 16), linear rope "
            "scaling (factor 4) on the global layers, final_logit_softcapping 3. No GGUF.",
            contrast=Gemma3TextConfig(**gemma3_dims(
                layer_types=["sliding_attention", "full_attention"] * (GEMMA_LAYERS // 2),
                query_pre_attn_scalar=24,
                rope_parameters={
                    "full_attention": {"rope_type": "linear", "factor": 4.0, "rope_theta": 1000000.0},
                    "sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                },
            )),
            contrast_label="final_logit_softcapping 3 vs none",
        ),
    ]


# ---------------------------------------------------------------------------------------------
# Weights
# ---------------------------------------------------------------------------------------------


def fan_in(name: str, shape: torch.Size) -> int:
    """Input width of a weight: GPT-2's Conv1D stores [in, out], everything else [.., out, in]."""
    if name.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")):
        return shape[0]
    return shape[-1]


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Fill every parameter with seeded noise sized so activations and logits are far from trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen, dtype=torch.float32)
            if p.dim() == 1 and name.endswith(".weight"):  # norm scales around 1
                value = 1.0 + 0.2 * noise
            elif p.dim() == 1:  # biases
                value = 0.1 * noise
            elif any(k in name for k in ("embed_tokens", "wte", "wpe")):
                value = 0.5 * noise
            elif "lm_head" in name:
                value = noise * (2.0 / math.sqrt(fan_in(name, p.shape)))
            else:
                value = noise * (1.0 / math.sqrt(fan_in(name, p.shape)))
            p.copy_(value.half().float())  # f16-representable, so the f16 file is exact


def build(config: transformers.PretrainedConfig, seed: int) -> torch.nn.Module:
    """A float32 eval-mode model with eager attention and seeded f16-exact weights."""
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    randomize(model, seed)
    return model


def logits_of(model: torch.nn.Module) -> torch.Tensor:
    """Float32 logits [positions, vocab] for TOKENS."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([TOKENS]), use_cache=False)
    return out.logits[0].float()


def same_weights(model: torch.nn.Module, config: transformers.PretrainedConfig) -> torch.nn.Module:
    """A model under another config carrying exactly `model`'s weights."""
    other = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    other.eval()
    other.load_state_dict(model.state_dict())
    return other


# ---------------------------------------------------------------------------------------------
# reference.json
# ---------------------------------------------------------------------------------------------


def write_reference(path: Path, logits: torch.Tensor, notes: str) -> None:
    """Logits rounded to 7 significant digits, one position per line."""
    rows = [",".join(f"{x:.7g}" for x in row.tolist()) for row in logits]
    body = ",\n".join(f"  [{r}]" for r in rows)
    text = (
        "{\n"
        f'"tokens": {json.dumps(TOKENS)},\n'
        f'"transformers": {json.dumps(transformers.__version__)},\n'
        f'"torch": {json.dumps(torch.__version__)},\n'
        f'"notes": {json.dumps(notes)},\n'
        f'"logits": [\n{body}\n]\n'
        "}\n"
    )
    json.loads(text)  # must stay valid JSON
    path.write_text(text)


# ---------------------------------------------------------------------------------------------
# GGUF, following llama.cpp's convert_hf_to_gguf.py
# ---------------------------------------------------------------------------------------------

LLAMA_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
    "block_sparse_moe.gate.weight": "ffn_gate_inp.weight",
}
LLAMA_GLOBAL_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
# Mixtral's per-expert w1/w2/w3 are stacked to [n_expert, out, in] under these names.
EXPERT_NAMES = {"w1": "ffn_gate_exps.weight", "w2": "ffn_down_exps.weight", "w3": "ffn_up_exps.weight"}

# Gemma 3's names in convert_hf_to_gguf (gguf-py's tensor map); every "*norm.weight" gets + 1.
GEMMA3_LAYER_NAMES = dict(
    LLAMA_LAYER_NAMES,
    **{
        "post_attention_layernorm.weight": "post_attention_norm.weight",
        "pre_feedforward_layernorm.weight": "ffn_norm.weight",
        "post_feedforward_layernorm.weight": "post_ffw_norm.weight",
        "self_attn.q_norm.weight": "attn_q_norm.weight",
        "self_attn.k_norm.weight": "attn_k_norm.weight",
    },
)

GPT2_LAYER_NAMES = {
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}
GPT2_GLOBAL_NAMES = {
    "transformer.wte.weight": "token_embd.weight",
    "transformer.wpe.weight": "position_embd.weight",
    "transformer.ln_f.weight": "output_norm.weight",
    "transformer.ln_f.bias": "output_norm.bias",
}

# Tensors convert_hf_to_gguf keeps in F32 whatever the output type.
F32_TENSORS = ("ffn_gate_inp.weight", "position_embd.weight")


def gguf_array(gguf_name: str, data: np.ndarray) -> np.ndarray:
    """llama.cpp's storage type: F32 for 1-D, norms, biases, the router and learned positions, else F16."""
    if data.ndim <= 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight") \
            or gguf_name.endswith(F32_TENSORS):
        return np.ascontiguousarray(data, dtype=np.float32)
    return np.ascontiguousarray(data, dtype=np.float16)


def permute_rope(w: np.ndarray, n_head: int) -> np.ndarray:
    """convert_hf_to_gguf's LlamaModel.permute: rotate-half row order -> interleaved pairs per head."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def llama3_rope_factors(rope: dict, head_dim: int) -> np.ndarray:
    """rope_freqs.weight: per-frequency divisors of theta^(-2i/d), computed as convert_hf_to_gguf does."""
    base = rope["rope_theta"]
    freqs = 1.0 / (base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    factor, low, high = rope["factor"], rope["low_freq_factor"], rope["high_freq_factor"]
    # Upstream reads this from the top level of config.json (default 8192); HF reads it from the rope
    # parameters, and that is what the reference logits use.
    old_ctx = rope["original_max_position_embeddings"]
    low_wavelen, high_wavelen = old_ctx / low, old_ctx / high
    factors = []
    for freq in freqs:
        wavelen = 2 * math.pi / freq
        if wavelen < high_wavelen:
            factors.append(1)
        elif wavelen > low_wavelen:
            factors.append(factor)
        else:
            smooth = (old_ctx / wavelen - low) / (high - low)
            factors.append(1 / ((1 - smooth) / factor + smooth))
    return torch.tensor(factors, dtype=torch.float32).numpy()


def llama_tensors(hf: dict[str, np.ndarray], cfg: dict, permute: bool) -> list[tuple[str, np.ndarray]]:
    """HF Llama/Mistral/Mixtral/Qwen2 tensors renamed (and q/k permuted for arch `llama`)."""
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    out: list[tuple[str, np.ndarray]] = []
    experts: dict[tuple[int, str], dict[int, np.ndarray]] = {}
    for name in sorted(hf):
        data = hf[name]
        if name in LLAMA_GLOBAL_NAMES:
            out.append((LLAMA_GLOBAL_NAMES[name], data))
            continue
        parts = name.split(".")  # model.layers.N.<rest>
        bid, rest = int(parts[2]), ".".join(parts[3:])
        if rest.startswith("block_sparse_moe.experts."):
            xid, wid = int(parts[5]), parts[6]
            experts.setdefault((bid, wid), {})[xid] = data
            if len(experts[(bid, wid)]) == cfg["num_local_experts"]:
                stacked = np.stack([experts[(bid, wid)][i] for i in range(cfg["num_local_experts"])])
                out.append((f"blk.{bid}.{EXPERT_NAMES[wid]}", stacked))
            continue
        if permute and rest.startswith("self_attn.q_proj."):
            data = permute_rope(data, n_head)
        if permute and rest.startswith("self_attn.k_proj."):
            data = permute_rope(data, n_kv)
        out.append((f"blk.{bid}.{LLAMA_LAYER_NAMES[rest]}", data))
    return out


def gemma3_tensors(hf: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """HF Gemma 3 tensors renamed, norms shifted by + 1 in float32 (Gemma3Model.modify_tensors); no
    q/k permutation (llama.cpp runs gemma3 with NEOX rope, like transformers)."""
    out: list[tuple[str, np.ndarray]] = []
    for name in sorted(hf):
        data = hf[name]
        if name.endswith("norm.weight"):
            data = data.astype(np.float32) + np.float32(1.0)
        if name in LLAMA_GLOBAL_NAMES:
            out.append((LLAMA_GLOBAL_NAMES[name], data))
            continue
        parts = name.split(".")  # model.layers.N.<rest>
        bid, rest = int(parts[2]), ".".join(parts[3:])
        out.append((f"blk.{bid}.{GEMMA3_LAYER_NAMES[rest]}", data))
    return out


def gpt2_tensors(hf: dict[str, np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """HF GPT-2 tensors renamed, Conv1D weights transposed to [out, in]."""
    out: list[tuple[str, np.ndarray]] = []
    for name in sorted(hf):
        data = hf[name]
        if name in GPT2_GLOBAL_NAMES:
            out.append((GPT2_GLOBAL_NAMES[name], data))
            continue
        parts = name.split(".")  # transformer.h.N.<module>.(weight|bias)
        bid, module, kind = int(parts[2]), ".".join(parts[3:-1]), parts[-1]
        if kind == "weight" and module in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            data = data.T
        out.append((f"blk.{bid}.{GPT2_LAYER_NAMES[module]}.{kind}", data))
    return out


def write_gguf(folder: Path, fx: Fixture) -> None:
    """model.gguf from the folder's config.json and model.safetensors, as convert_hf_to_gguf would."""
    cfg = json.loads((folder / "config.json").read_text())
    hf = safetensors.numpy.load_file(folder / "model.safetensors")
    arch = fx.gguf_arch
    w = gguf.GGUFWriter(folder / "model.gguf", arch)  # writes general.architecture
    w.add_name(fx.name)
    tensors: list[tuple[str, np.ndarray]] = []
    if arch == "gpt2":
        w.add_block_count(cfg["n_layer"])
        w.add_context_length(cfg["n_positions"])
        w.add_embedding_length(cfg["n_embd"])
        w.add_feed_forward_length(cfg["n_inner"] or 4 * cfg["n_embd"])
        w.add_head_count(cfg["n_head"])
        w.add_layer_norm_eps(cfg["layer_norm_epsilon"])
        w.add_vocab_size(cfg["vocab_size"])
        tensors = gpt2_tensors(hf)
    elif arch == "gemma3":
        # Gemma3Model.set_gguf_parameters: global rope base only (llama.cpp fixes the sliding
        # layers' 1e4 and the pattern 6), key/value length = head_dim, the window.
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(cfg["num_attention_heads"])
        w.add_head_count_kv(cfg["num_key_value_heads"])
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        w.add_key_length(cfg["head_dim"])
        w.add_value_length(cfg["head_dim"])
        w.add_rope_freq_base(cfg["rope_parameters"]["full_attention"]["rope_theta"])
        w.add_sliding_window(cfg["sliding_window"])
        w.add_vocab_size(cfg["vocab_size"])
        tensors = gemma3_tensors(hf)
    else:
        rope = cfg["rope_parameters"]
        head_dim = cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"]
        w.add_block_count(cfg["num_hidden_layers"])
        w.add_context_length(cfg["max_position_embeddings"])
        w.add_embedding_length(cfg["hidden_size"])
        w.add_feed_forward_length(cfg["intermediate_size"])
        w.add_head_count(cfg["num_attention_heads"])
        w.add_head_count_kv(cfg["num_key_value_heads"])
        w.add_rope_freq_base(rope["rope_theta"])
        w.add_layer_norm_rms_eps(cfg["rms_norm_eps"])
        if "num_local_experts" in cfg:
            w.add_expert_count(cfg["num_local_experts"])
            w.add_expert_used_count(cfg["num_experts_per_tok"])
        if cfg.get("head_dim") is not None:
            w.add_key_length(cfg["head_dim"])
            w.add_value_length(cfg["head_dim"])
        w.add_vocab_size(cfg["vocab_size"])
        if arch == "llama":
            w.add_rope_dimension_count(head_dim)
        if cfg.get("sliding_window") is not None and cfg["model_type"] == "mistral":
            w.add_sliding_window(cfg["sliding_window"])
        if rope.get("rope_type") == "llama3":
            tensors.append(("rope_freqs.weight", llama3_rope_factors(rope, head_dim)))
        tensors += llama_tensors(hf, cfg, permute=(arch == "llama"))
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, data in tensors:
        w.add_tensor(name, gguf_array(name, data))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


# ---------------------------------------------------------------------------------------------
# MLX affine quantization
# ---------------------------------------------------------------------------------------------

# (bits, group_size, hidden, ffn): every group size divides every input width, each row of
# down_proj spans at least two groups, and the widths stay small enough to commit.
MLX_VARIANTS = [(4, 32, 64, 128), (8, 64, 64, 128), (4, 128, 128, 256)]


def mlx_quantize(w: np.ndarray, bits: int, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Affine quantization per group of `group` input elements: w ~= scales * q + biases.

    scale = (max - min) / (2^bits - 1) and bias = min are rounded to f16 first, and q is computed
    against the rounded values, so the stored (q, scales, biases) dequantize as closely as they can.
    """
    out_dim, in_dim = w.shape
    levels = (1 << bits) - 1
    g = w.astype(np.float32).reshape(out_dim, in_dim // group, group)
    lo, hi = g.min(axis=-1), g.max(axis=-1)
    scales = ((hi - lo) / levels).astype(np.float16)
    biases = lo.astype(np.float16)
    s32, b32 = scales.astype(np.float32), biases.astype(np.float32)
    safe = np.where(s32 == 0, 1.0, s32)[..., None]  # constant group: every q is 0
    q = np.clip(np.round((g - b32[..., None]) / safe), 0, levels).astype(np.uint32)
    per_word = 32 // bits
    q = q.reshape(out_dim, in_dim // per_word, per_word)
    shifts = (np.arange(per_word, dtype=np.uint32) * bits)[None, None, :]
    packed = np.bitwise_or.reduce(q << shifts, axis=-1).astype(np.uint32)  # first element in the low bits
    return packed, scales, biases


def mlx_dequantize(packed: np.ndarray, scales: np.ndarray, biases: np.ndarray, bits: int, group: int) -> np.ndarray:
    """float32 scales * q + biases, from the stored f16 scales and biases."""
    per_word = 32 // bits
    shifts = (np.arange(per_word, dtype=np.uint32) * bits)[None, None, :]
    q = ((packed[..., None] >> shifts) & ((1 << bits) - 1)).reshape(packed.shape[0], -1).astype(np.float32)
    out_dim, in_dim = q.shape
    q = q.reshape(out_dim, in_dim // group, group)
    w = scales.astype(np.float32)[..., None] * q + biases.astype(np.float32)[..., None]
    return w.reshape(out_dim, in_dim)


def write_mlx(bits: int, group: int, hidden: int, ffn: int, seed: int) -> None:
    """smollm-mlx-q<bits>-g<group>: quantized safetensors, mlx_lm-style config, dequantized reference."""
    name = f"smollm-mlx-q{bits}-g{group}"
    folder = OUT / name
    folder.mkdir(parents=True)
    # SmolLM-style Llama (GQA, tied embeddings), wider than the others so the groups fit.
    config = LlamaConfig(**llama_dims(hidden_size=hidden, intermediate_size=ffn, tie_word_embeddings=True))
    model = build(config, seed)
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    tensors: dict[str, np.ndarray] = {}
    with torch.no_grad():
        for key in sorted(state):
            if key == "lm_head.weight":  # tied to the embedding: not stored
                continue
            w = state[key].numpy()
            if w.ndim == 2:  # every Linear and the Embedding; norms stay f16
                packed, scales, biases = mlx_quantize(w, bits, group)
                stem = key.removesuffix(".weight")
                tensors[f"{stem}.weight"] = packed
                tensors[f"{stem}.scales"] = scales
                tensors[f"{stem}.biases"] = biases
                state[key] = torch.from_numpy(mlx_dequantize(packed, scales, biases, bits, group))
            else:
                tensors[key] = w.astype(np.float16)
        # lm_head shares the embedding's storage: load it with the same dequantized values.
        state["lm_head.weight"] = state["model.embed_tokens.weight"]
        model.load_state_dict(state)
    logits = logits_of(model)
    safetensors.numpy.save_file(tensors, folder / "model.safetensors", metadata={"format": "mlx"})

    # mlx_lm keeps the HF config it converted, adds the quantization keys, and dumps it sorted with
    # indent 4. Hub configs predate transformers 5, so these use its older keys: torch_dtype, and
    # rope_theta / rope_scaling instead of rope_parameters. That also gives the loaders a fixture in
    # the older form.
    tmp = folder / "hf-config"
    model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(tmp)
    cfg = json.loads((tmp / "config.json").read_text())
    shutil.rmtree(tmp)
    cfg.pop("dtype", None)
    cfg["torch_dtype"] = "float16"
    cfg["rope_theta"] = cfg.pop("rope_parameters")["rope_theta"]
    cfg["rope_scaling"] = None
    cfg["quantization"] = {"group_size": group, "bits": bits}
    cfg["quantization_config"] = {"group_size": group, "bits": bits}
    (folder / "config.json").write_text(json.dumps(dict(sorted(cfg.items())), indent=4) + "\n")

    notes = (
        f"SmolLM-style Llama (hidden {hidden}, ffn {ffn}, GQA, tied embeddings) with every Linear and "
        f"the Embedding MLX-affine-quantized to {bits} bits in groups of {group}. Reference logits come from the "
        "HF model whose weights are float32 scales*q+biases, computed from the stored f16 scales/biases."
    )
    write_reference(folder / "reference.json", logits, notes)
    print(f"{name}: written")


# ---------------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------------


def write_fixture(fx: Fixture, seed: int) -> None:
    """One architecture folder."""
    folder = OUT / fx.name
    model = build(fx.config, seed)
    logits = logits_of(model)
    if fx.contrast is not None:
        diff = (logits - logits_of(same_weights(model, fx.contrast))).abs().max().item()
        print(f"{fx.name}: {fx.contrast_label}: max |logit diff| = {diff:.6f}")
        if diff <= 1e-3:
            raise SystemExit(f"{fx.name}: the feature does not change the logits (max diff {diff})")
    model.half().save_pretrained(folder)
    if fx.gguf_arch is not None:
        write_gguf(folder, fx)
    notes = fx.notes + (
        f" Float32 logits of every position from transformers {type(model).__name__} "
        "(eval, eager attention) over the f16-exact weights in model.safetensors."
    )
    write_reference(folder / "reference.json", logits, notes)
    print(f"{fx.name}: written")


def main() -> None:
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if OUT.exists():
        for child in OUT.iterdir():  # keep README.md, rewrite every fixture folder
            if child.is_dir():
                shutil.rmtree(child)
    OUT.mkdir(parents=True, exist_ok=True)
    for i, fx in enumerate(fixtures()):
        write_fixture(fx, seed=1000 + i)
    for i, (bits, group, hidden, ffn) in enumerate(MLX_VARIANTS):
        write_mlx(bits, group, hidden, ffn, seed=2000 + i)


if __name__ == "__main__":
    main()
