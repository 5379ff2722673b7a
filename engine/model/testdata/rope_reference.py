"""Reference log-probabilities of a Llama-family model with scaled rotary
embeddings, for engine/model's rope tests.

The rope variants are written out from their published formulas (the same
ones Hugging Face transformers' modeling_rope_utils.py uses, computed in
float32 as it does); the rest of the model, torch_reference.py's Llama
decoder, is float64. Nothing but torch is needed.

usage: rope_reference.py MODEL_DIR BATCH_JSON OUT_DIR
BATCH_JSON: {"ids": [[...], ...] (right padded), "lens": [...]}
Writes OUT_DIR/reference.safetensors with "logits" and "logprobs".
"""
import math
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402


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
    cfg, W = ref.load_model(model_dir)
    _, ids, lens, _, mask = ref.read_batch(batch_path)
    H, nH = cfg["hidden_size"], cfg["num_attention_heads"]
    D = cfg.get("head_dim") or H // nH
    rd = int(D * cfg.get("partial_rotary_factor", 1.0))

    pos = torch.arange(ids.shape[1])
    inv, scale = inv_freq_and_scale(cfg, rd, int(pos.max()) + 1)
    angles = pos.float()[:, None] * inv[None, :]
    emb = torch.cat([angles, angles], -1)
    cos = (emb.cos() * scale).to(torch.float64)
    sin = (emb.sin() * scale).to(torch.float64)

    hidden, head = ref.llama(cfg, W, ids, mask, "model.", rope=(cos, sin))
    out = ref.outputs("lm", W, hidden, head, ids, lens)
    ref.save_safetensors(os.path.join(out_dir, "reference.safetensors"), out)


if __name__ == "__main__":
    main()
