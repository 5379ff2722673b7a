"""Reference log-probabilities of a Llama-family model with scaled rotary
embeddings, for engine/model's rope tests.

The rope variants are written out from their published formulas (the same
ones Hugging Face transformers' modeling_rope_utils.py uses, computed in
float32 as it does); the rest of the model is float64. Nothing but torch is
needed: safetensors I/O and the shared pieces come from torch_reference.py.

usage: rope_reference.py MODEL_DIR BATCH_JSON OUT_DIR
BATCH_JSON: {"ids": [[...], ...] (right padded), "lens": [...]}
Writes OUT_DIR/reference.safetensors with "logits" and "logprobs".
"""
import json
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_reference import attention, load_safetensors, rms, rotate_half, save_safetensors  # noqa: E402


def inv_freq_and_scale(cfg, dim, seq_len):
    """inv_freq [dim/2] float32 and the factor applied to cos and sin."""
    base = cfg.get("rope_theta", 10000.0)
    rs = cfg.get("rope_scaling") or {}
    kind = rs.get("rope_type", rs.get("type", "default"))
    max_pos = cfg["max_position_embeddings"]
    exps = torch.arange(0, dim, 2, dtype=torch.int64).float() / dim
    if kind == "dynamic":
        # NTK-aware base, rescaled for the current length when it exceeds
        # max_position_embeddings.
        f = rs["factor"]
        seq = max(seq_len, max_pos)
        base = base * ((f * seq / max_pos) - (f - 1)) ** (dim / (dim - 2))
    inv = 1.0 / (base ** exps)
    scale = 1.0
    if kind == "linear":
        inv = inv / rs["factor"]
    elif kind == "llama3":
        f, lo, hi = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        lo_wave, hi_wave = old / lo, old / hi
        wave = 2 * math.pi / inv
        scaled = torch.where(wave > lo_wave, inv / f, inv)
        smooth = (old / wave - lo) / (hi - lo)
        blended = (1 - smooth) * scaled / f + smooth * scaled
        medium = (wave >= hi_wave) & (wave <= lo_wave)
        inv = torch.where(medium, blended, scaled)
    elif kind == "yarn":
        orig = rs.get("original_max_position_embeddings", max_pos)
        f = rs.get("factor") or max_pos / orig

        def mscale(s, m=1.0):
            return 1.0 if s <= 1 else 0.1 * m * math.log(s) + 1.0

        if rs.get("attention_factor") is not None:
            scale = rs["attention_factor"]
        elif rs.get("mscale") and rs.get("mscale_all_dim"):
            scale = mscale(f, rs["mscale"]) / mscale(f, rs["mscale_all_dim"])
        else:
            scale = mscale(f)
        beta_fast = rs.get("beta_fast") or 32
        beta_slow = rs.get("beta_slow") or 1

        def corr_dim(rot):
            return dim * math.log(orig / (rot * 2 * math.pi)) / (2 * math.log(base))

        low, high = corr_dim(beta_fast), corr_dim(beta_slow)
        if rs.get("truncate", True):
            low, high = math.floor(low), math.ceil(high)
        low, high = max(low, 0), min(high, dim - 1)
        if low == high:
            high += 0.001
        ramp = ((torch.arange(dim // 2, dtype=torch.float32) - low) / (high - low)).clamp(0, 1)
        keep = 1 - ramp  # share of the unscaled frequency
        pos_freqs = base ** exps
        inv = (1.0 / (f * pos_freqs)) * (1 - keep) + (1.0 / pos_freqs) * keep
    return inv.float(), scale


def main():
    model_dir, batch_path, out_dir = sys.argv[1:4]
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    W = load_safetensors(os.path.join(model_dir, "model.safetensors"))
    batch = json.load(open(batch_path))
    ids = torch.tensor(batch["ids"])
    lens = torch.tensor(batch["lens"])
    B, L = ids.shape
    H, nH = cfg["hidden_size"], cfg["num_attention_heads"]
    nKV = cfg.get("num_key_value_heads", nH)
    D = cfg.get("head_dim") or H // nH
    rd = int(D * cfg.get("partial_rotary_factor", 1.0))
    eps = cfg.get("rms_norm_eps", 1e-6)
    bias = cfg["model_type"] == "qwen2" or cfg.get("attention_bias", False)

    pos = torch.arange(L)
    inv, scale = inv_freq_and_scale(cfg, rd, int(pos.max()) + 1)
    angles = pos.float()[:, None] * inv[None, :]
    emb = torch.cat([angles, angles], -1)
    cos = (emb.cos() * scale).to(torch.float64)
    sin = (emb.sin() * scale).to(torch.float64)

    def rope(x):
        xr, xp = x[..., :rd], x[..., rd:]
        return torch.cat([xr * cos + rotate_half(xr) * sin, xp], -1)

    valid = torch.arange(L)[None, :] < lens[:, None]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    eye = torch.eye(L, dtype=torch.bool)
    mask = (causal & (valid[:, None, :] | eye))[:, None]

    pre = "model."

    def lin(h, name):
        y = h @ W[name + ".weight"].T
        return y + W[name + ".bias"] if bias else y

    x = W[pre + "embed_tokens.weight"][ids]
    for i in range(cfg["num_hidden_layers"]):
        p = f"{pre}layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        q = lin(h, p + "self_attn.q_proj").reshape(B, L, nH, D).transpose(1, 2)
        k = lin(h, p + "self_attn.k_proj").reshape(B, L, nKV, D).transpose(1, 2)
        v = lin(h, p + "self_attn.v_proj").reshape(B, L, nKV, D).transpose(1, 2)
        q, k = rope(q), rope(k)
        k = k.repeat_interleave(nH // nKV, dim=1)
        v = v.repeat_interleave(nH // nKV, dim=1)
        a = attention(q, k, v, mask).transpose(1, 2).reshape(B, L, nH * D)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        x = x + (F.silu(h @ W[p + "mlp.gate_proj.weight"].T) * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W[pre + "norm.weight"], eps)
    head = W.get("lm_head.weight", W[pre + "embed_tokens.weight"])
    logits = x @ head.T
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    save_safetensors(os.path.join(out_dir, "reference.safetensors"), {"logits": logits, "logprobs": logp})


if __name__ == "__main__":
    main()
