"""Reference forward/backward in plain PyTorch for engine/model's tests.

Reads a Hugging Face model directory written by the Go engine (config.json +
model.safetensors, parsed here with struct and json so nothing but torch is
needed), runs the GPT-2, Llama-family or Gemma 3 maths written out by hand, and writes
logits, the mean next-token loss, its gradients (and reward scores for a
reward model) to OUT as safetensors plus a JSON summary.

usage: torch_reference.py MODEL_DIR BATCH_JSON OUT_DIR
BATCH_JSON: {"ids": [[...], ...] (right padded), "lens": [...], "kind": "lm"|"reward"}
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16, "F64": torch.float64}


def load_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, end = info["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[info["dtype"]])
        out[name] = t.reshape(info["shape"]).to(torch.float64)
    return out


def save_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        b = t.detach().to(torch.float32).contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def attention(q, k, v, mask):
    # q [B, nH, L, D]; mask [B, 1, L, L] bool
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask, float("-inf"))
    return torch.softmax(scores, -1) @ v


def gpt2(cfg, W, ids, mask, pre):
    B, L = ids.shape
    H, nH = cfg["n_embd"], cfg["n_head"]
    D = H // nH
    eps = cfg.get("layer_norm_epsilon", 1e-5)
    pos = torch.arange(L).expand(B, L)
    x = W[pre + "wte.weight"][ids] + W[pre + "wpe.weight"][pos]
    for i in range(cfg["n_layer"]):
        p = f"{pre}h.{i}."
        h = F.layer_norm(x, (H,), W[p + "ln_1.weight"], W[p + "ln_1.bias"], eps)
        qkv = h @ W[p + "attn.c_attn.weight"] + W[p + "attn.c_attn.bias"]  # Conv1D: [in, out]
        q, k, v = (t.reshape(B, L, nH, D).transpose(1, 2) for t in qkv.split(H, -1))
        a = attention(q, k, v, mask).transpose(1, 2).reshape(B, L, H)
        x = x + a @ W[p + "attn.c_proj.weight"] + W[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (H,), W[p + "ln_2.weight"], W[p + "ln_2.bias"], eps)
        act = F.gelu(h @ W[p + "mlp.c_fc.weight"] + W[p + "mlp.c_fc.bias"], approximate="tanh")
        x = x + act @ W[p + "mlp.c_proj.weight"] + W[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (H,), W[pre + "ln_f.weight"], W[pre + "ln_f.bias"], eps)
    return x, W[pre + "wte.weight"]


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat([-x[..., h:], x[..., :h]], -1)


def qkv_heads(proj, nH, nKV, D):
    """The q, k and v projections (proj of "self_attn.q_proj" and so on),
    split into heads: [B, heads, L, D]."""
    out = []
    for name, heads in (("q", nH), ("k", nKV), ("v", nKV)):
        y = proj(f"self_attn.{name}_proj")
        out.append(y.reshape(*y.shape[:2], heads, D).transpose(1, 2))
    return out


def rope_gqa(q, k, v, cos, sin, groups):
    """Rotates q and k by the (cos, sin) tables (the first cos.shape[-1]
    features of a head; all of them unless the rotation is partial), then
    repeats k and v for the groups of query heads that share them."""
    rd = cos.shape[-1]

    def rot(x):
        xr, xp = x[..., :rd], x[..., rd:]
        return torch.cat([xr * cos + rotate_half(xr) * sin, xp], -1)

    return rot(q), rot(k).repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)


def llama(cfg, W, ids, mask, pre, rope=None):
    """The Llama family's decoder. rope, when given, is the (cos, sin) tables
    to rotate with (narrower than a head for partial rotation); by default,
    plain rope of rope_theta."""
    B, L = ids.shape
    H, nH = cfg["hidden_size"], cfg["num_attention_heads"]
    nKV = cfg.get("num_key_value_heads", nH)
    D = cfg.get("head_dim") or H // nH
    eps = cfg.get("rms_norm_eps", 1e-6)
    theta = cfg.get("rope_theta", 10000.0)
    qwen2 = cfg["model_type"] == "qwen2"
    qk_norm = cfg["model_type"] == "qwen3"
    cos, sin = rope if rope is not None else rope_cos_sin(theta, D, L, None)
    x = W[pre + "embed_tokens.weight"][ids]

    def lin(h, name, bias):
        y = h @ W[name + ".weight"].T
        return y + W[name + ".bias"] if bias else y

    for i in range(cfg["num_hidden_layers"]):
        p = f"{pre}layers.{i}."
        h = rms(x, W[p + "input_layernorm.weight"], eps)
        bias = qwen2 or cfg.get("attention_bias", False)
        q, k, v = qkv_heads(lambda n: lin(h, p + n, bias), nH, nKV, D)
        if qk_norm:
            q = rms(q, W[p + "self_attn.q_norm.weight"], eps)
            k = rms(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k, v = rope_gqa(q, k, v, cos, sin, nH // nKV)
        a = attention(q, k, v, mask).transpose(1, 2).reshape(B, L, nH * D)
        x = x + a @ W[p + "self_attn.o_proj.weight"].T
        h = rms(x, W[p + "post_attention_layernorm.weight"], eps)
        gate = F.silu(h @ W[p + "mlp.gate_proj.weight"].T)
        x = x + (gate * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
    x = rms(x, W[pre + "norm.weight"], eps)
    head = W.get("lm_head.weight", W[pre + "embed_tokens.weight"])
    return x, head


def gemma_rms(x, w, eps):
    # Gemma's RMSNorm scales by (1 + weight).
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * (1.0 + w)


def rope_cos_sin(theta, D, L, scaling):
    inv_freq = 1.0 / (theta ** (torch.arange(0, D, 2, dtype=torch.float32) / D))
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        assert kind == "linear", kind
        inv_freq = inv_freq / scaling["factor"]
    freqs = torch.arange(L, dtype=torch.float32)[:, None] * inv_freq[None, :]
    emb = torch.cat([freqs, freqs], -1).to(torch.float64)
    return emb.cos(), emb.sin()


def gemma3(cfg, W, ids, mask, pre):
    """Gemma 3's text decoder (modeling_gemma3.py's maths)."""
    B, L = ids.shape
    H, nH, nKV, D = cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    assert cfg["hidden_activation"] == "gelu_pytorch_tanh"
    cos_g, sin_g = rope_cos_sin(cfg["rope_theta"], D, L, cfg.get("rope_scaling"))
    cos_l, sin_l = rope_cos_sin(cfg["rope_local_base_freq"], D, L, None)
    q_idx = torch.arange(L)[:, None]
    k_idx = torch.arange(L)[None, :]
    local_mask = mask & (q_idx - k_idx < cfg["sliding_window"])
    scale = cfg["query_pre_attn_scalar"] ** -0.5
    x = W[pre + "embed_tokens.weight"][ids] * torch.tensor(H ** 0.5, dtype=torch.float32).to(torch.float64)

    for i in range(cfg["num_hidden_layers"]):
        p = f"{pre}layers.{i}."
        local = cfg["layer_types"][i] == "sliding_attention"
        cos, sin, msk = (cos_l, sin_l, local_mask) if local else (cos_g, sin_g, mask)
        h = gemma_rms(x, W[p + "input_layernorm.weight"], eps)
        q, k, v = qkv_heads(lambda n: h @ W[p + n + ".weight"].T, nH, nKV, D)
        q = gemma_rms(q, W[p + "self_attn.q_norm.weight"], eps)
        k = gemma_rms(k, W[p + "self_attn.k_norm.weight"], eps)
        q, k, v = rope_gqa(q, k, v, cos, sin, nH // nKV)
        scores = (q @ k.transpose(-1, -2)) * scale
        scores = scores.masked_fill(~msk, float("-inf"))
        a = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(B, L, nH * D)
        a = a @ W[p + "self_attn.o_proj.weight"].T
        x = x + gemma_rms(a, W[p + "post_attention_layernorm.weight"], eps)
        h = gemma_rms(x, W[p + "pre_feedforward_layernorm.weight"], eps)
        gate = F.gelu(h @ W[p + "mlp.gate_proj.weight"].T, approximate="tanh")
        mlp = (gate * (h @ W[p + "mlp.up_proj.weight"].T)) @ W[p + "mlp.down_proj.weight"].T
        x = x + gemma_rms(mlp, W[p + "post_feedforward_layernorm.weight"], eps)
    x = gemma_rms(x, W[pre + "norm.weight"], eps)
    head = W.get("lm_head.weight", W[pre + "embed_tokens.weight"])
    return x, head


def load_model(model_dir):
    """config.json and the float64 weights of a model directory."""
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    return cfg, load_safetensors(os.path.join(model_dir, "model.safetensors"))


def read_batch(path):
    """A batch file's kind, ids and lens as tensors, which of its positions
    hold tokens, and the attention mask [B, 1, L, L]."""
    batch = json.load(open(path))
    ids = torch.tensor(batch["ids"])
    lens = torch.tensor(batch["lens"])
    L = ids.shape[1]
    valid = torch.arange(L)[None, :] < lens[:, None]
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    eye = torch.eye(L, dtype=torch.bool)
    mask = (causal & (valid[:, None, :] | eye))[:, None]
    return batch.get("kind", "lm"), ids, lens, valid, mask


def model_forward(cfg, W, ids, mask):
    """The final hidden states and the output head of the model cfg names."""
    pre = "transformer." if cfg["model_type"] == "gpt2" else "model."
    decoder = {"gpt2": gpt2, "gemma3_text": gemma3}.get(cfg["model_type"], llama)
    return decoder(cfg, W, ids, mask, pre)


def outputs(kind, W, hidden, head, ids, lens):
    """A reward model's scores, or a language model's logits and next-token
    log-probabilities."""
    if kind == "reward":
        last = hidden[torch.arange(len(lens)), lens - 1]
        return {"scores": (last @ W["score.weight"].T)[:, 0]}
    logits = hidden @ head.T
    logp = torch.log_softmax(logits[:, :-1], -1).gather(-1, ids[:, 1:, None])[..., 0]
    return {"logits": logits, "logprobs": logp}


def main():
    model_dir, batch_path, out_dir = sys.argv[1:4]
    cfg, W = load_model(model_dir)
    for t in W.values():
        t.requires_grad_(True)
    kind, ids, lens, valid, mask = read_batch(batch_path)
    hidden, head = model_forward(cfg, W, ids, mask)
    out = outputs(kind, W, hidden, head, ids, lens)
    if kind == "reward":
        loss = out["scores"].sum()
    else:
        keep = valid[:, 1:]
        loss = -(out["logprobs"] * keep).sum() / keep.sum()
    loss.backward()
    for name, t in W.items():
        if t.grad is not None:
            out["grad." + name] = t.grad
    save_safetensors(os.path.join(out_dir, "reference.safetensors"), out)
    json.dump({"loss": loss.item(), "torch": torch.__version__}, open(os.path.join(out_dir, "reference.json"), "w"))


if __name__ == "__main__":
    main()
