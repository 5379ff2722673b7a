"""PyTorch peer of bench/models: the same Llama-family model on the same
safetensors weights, doing the same work as the Go engine: greedy decode with
a preallocated KV cache, reward-model scoring, and a language-model training
step with AdamW. Prints one JSON object.

usage: peer.py LM_DIR RM_DIR SPEC_JSON
"""
import json
import math
import os
import struct
import sys
import time

import torch
import torch.nn.functional as F

DT = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


def load(path):
    raw = open(path, "rb").read()
    n = struct.unpack("<Q", raw[:8])[0]
    hdr = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        b, e = v["data_offsets"]
        out[k] = torch.frombuffer(bytearray(data[b:e]), dtype=DT[v["dtype"]]).reshape(v["shape"]).float()
    return out


class Llama(torch.nn.Module):
    def __init__(self, d):
        super().__init__()
        self.cfg = json.load(open(os.path.join(d, "config.json")))
        c = self.cfg
        self.H, self.nH, self.nKV = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        self.D = c.get("head_dim") or self.H // self.nH
        self.eps = c["rms_norm_eps"]
        W = load(os.path.join(d, "model.safetensors"))
        self.W = torch.nn.ParameterDict({k.replace(".", "__"): torch.nn.Parameter(v) for k, v in W.items()})
        inv = 1.0 / (c["rope_theta"] ** (torch.arange(0, self.D, 2).float() / self.D))
        f = torch.arange(c["max_position_embeddings"]).float()[:, None] * inv[None]
        e = torch.cat([f, f], -1)
        self.cos, self.sin = e.cos(), e.sin()

    def w(self, n):
        return self.W[n.replace(".", "__")]

    def rms(self, x, w):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * w

    def rot(self, x, cos, sin):
        h = x.shape[-1] // 2
        return x * cos + torch.cat([-x[..., h:], x[..., :h]], -1) * sin

    def forward(self, ids, pos, mask, cache=None, start=0):
        B, L = ids.shape
        x = F.embedding(ids, self.w("model.embed_tokens.weight"))
        cos, sin = self.cos[pos][:, None], self.sin[pos][:, None]
        rep = self.nH // self.nKV
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            h = self.rms(x, self.w(p + "input_layernorm.weight"))
            q = F.linear(h, self.w(p + "self_attn.q_proj.weight")).view(B, L, self.nH, self.D).transpose(1, 2)
            k = F.linear(h, self.w(p + "self_attn.k_proj.weight")).view(B, L, self.nKV, self.D).transpose(1, 2)
            v = F.linear(h, self.w(p + "self_attn.v_proj.weight")).view(B, L, self.nKV, self.D).transpose(1, 2)
            q, k = self.rot(q, cos, sin), self.rot(k, cos, sin)
            if cache is not None:
                ck, cv = cache[i]
                ck[:, :, start:start + L] = k
                cv[:, :, start:start + L] = v
                k, v = ck[:, :, :start + L], cv[:, :, :start + L]
            if rep > 1:
                k = k[:, :, None].expand(B, self.nKV, rep, k.shape[2], self.D).reshape(B, self.nH, -1, self.D)
                v = v[:, :, None].expand(B, self.nKV, rep, v.shape[2], self.D).reshape(B, self.nH, -1, self.D)
            s = (q @ k.transpose(-1, -2)) / math.sqrt(self.D)
            s = s.masked_fill(~mask, float("-inf"))
            a = (torch.softmax(s, -1) @ v).transpose(1, 2).reshape(B, L, -1)
            x = x + F.linear(a, self.w(p + "self_attn.o_proj.weight"))
            h = self.rms(x, self.w(p + "post_attention_layernorm.weight"))
            g = F.silu(F.linear(h, self.w(p + "mlp.gate_proj.weight")))
            x = x + F.linear(g * F.linear(h, self.w(p + "mlp.up_proj.weight")), self.w(p + "mlp.down_proj.weight"))
        return self.rms(x, self.w("model.norm.weight"))

    def logits(self, h):
        name = "lm_head.weight" if "lm_head__weight" in self.W else "model.embed_tokens.weight"
        return F.linear(h, self.w(name))


def decode(m, B, prompt, new):
    torch.manual_seed(0)
    ids = torch.randint(0, m.cfg["vocab_size"], (B, prompt))
    cap = prompt + new
    cache = [(torch.zeros(B, m.nKV, cap, m.D), torch.zeros(B, m.nKV, cap, m.D)) for _ in range(m.cfg["num_hidden_layers"])]
    with torch.no_grad():
        t0, c0 = time.perf_counter(), time.process_time()
        pos = torch.arange(prompt).expand(B, prompt)
        mask = torch.ones(prompt, prompt, dtype=torch.bool).tril()[None, None].expand(B, 1, prompt, prompt)
        h = m(ids, pos, mask, cache, 0)
        tok = m.logits(h[:, -1]).argmax(-1, keepdim=True)
        for t in range(new - 1):
            p = prompt + t
            mask = torch.ones(B, 1, 1, p + 1, dtype=torch.bool)
            h = m(tok, torch.full((B, 1), p), mask, cache, p)
            tok = m.logits(h[:, -1]).log_softmax(-1).argmax(-1, keepdim=True)
        return B * new / (time.perf_counter() - t0), (time.process_time() - c0) / (B * new)


def main():
    lm_dir, rm_dir, spec = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    torch.set_num_threads(spec["threads"])
    runs = spec.get("runs", 1)
    out = {"torch": torch.__version__, "decode": {}, "decode_cpu": {}, "rm_seq_per_s": [], "train_tok_per_s": []}
    m = Llama(lm_dir)
    for B in spec["decode_batches"]:
        decode(m, B, spec["prompt"], 4)  # warm up
        out["decode"][str(B)], out["decode_cpu"][str(B)] = [], []
    for _ in range(runs):
        for B in spec["decode_batches"]:
            rate, cpu = decode(m, B, spec["prompt"], spec["new"])
            out["decode"][str(B)].append(rate)
            out["decode_cpu"][str(B)].append(cpu)
    if spec.get("decode_only"):
        print(json.dumps(out))
        return
    # Reward model: sequences/s at batch RB, length RL.
    rm = Llama(rm_dir)
    B, L = spec["rm_batch"], spec["rm_len"]
    ids = torch.randint(0, rm.cfg["vocab_size"], (B, L))
    pos = torch.arange(L).expand(B, L)
    mask = torch.ones(L, L, dtype=torch.bool).tril()[None, None].expand(B, 1, L, L)
    with torch.no_grad():
        for _ in range(2):
            h = rm(ids, pos, mask)
        for _ in range(runs):
            t0 = time.perf_counter()
            for _ in range(spec["rm_iters"]):
                h = rm(ids, pos, mask)
                F.linear(h[:, -1], rm.w("score.weight"))
            out["rm_seq_per_s"].append(B * spec["rm_iters"] / (time.perf_counter() - t0))
    # Training step: forward, next-token loss, backward, AdamW.
    B, L = spec["train_batch"], spec["train_len"]
    ids = torch.randint(0, m.cfg["vocab_size"], (B, L))
    pos = torch.arange(L).expand(B, L)
    mask = torch.ones(L, L, dtype=torch.bool).tril()[None, None].expand(B, 1, L, L)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-4, weight_decay=0.0)

    def step():
        logits = m.logits(m(ids, pos, mask))
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    step()
    for _ in range(runs):
        t0 = time.perf_counter()
        for _ in range(spec["train_iters"]):
            step()
        out["train_tok_per_s"].append(B * L * spec["train_iters"] / (time.perf_counter() - t0))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
