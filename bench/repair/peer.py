"""PyTorch peer of bench/repair: one policy-repair step (Dr. GRPO) on the
same weights and data as the Go engine, written the way a PyTorch user
would: batched sampling with a KV cache, RM scoring, old and reference
log-probabilities, then updates with the clipped policy gradient, k3 KL,
unlikelihood and replay losses, global-norm clipping and AdamW. It reuses
the Llama of bench/models/peer.py. Prints one JSON object.

usage: peer.py POLICY_DIR RM_DIR WORKLOAD_JSON
"""
import copy
import json
import math
import os
import random
import sys
import time

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models"))
from peer import Llama  # noqa: E402

UL_MIN_COMPLEMENT = 1e-5


def right_pad(seqs, pad):
    """ids [B, L], positions, causal+padding mask, last real index, and the
    [B, L-1] mask of response-token columns for (prompt, response) pairs."""
    L = max(len(p) + len(r) for p, r in seqs)
    B = len(seqs)
    ids = torch.full((B, L), pad, dtype=torch.long)
    valid = torch.zeros(B, L, dtype=torch.bool)
    resp = torch.zeros(B, L - 1)
    last = torch.zeros(B, dtype=torch.long)
    for i, (p, r) in enumerate(seqs):
        s = p + r
        ids[i, :len(s)] = torch.tensor(s)
        valid[i, :len(s)] = True
        resp[i, len(p) - 1:len(s) - 1] = 1
        last[i] = len(s) - 1
    pos = torch.arange(L).expand(B, L)
    causal = torch.ones(L, L, dtype=torch.bool).tril()
    mask = causal[None, None] & valid[:, None, None, :]
    mask = mask | torch.eye(L, dtype=torch.bool)[None, None]  # padding rows attend to themselves
    return ids, pos, mask, last, resp


def token_logprobs(m, ids, pos, mask):
    logits = m.logits(m(ids, pos, mask))[:, :-1]
    return logits.log_softmax(-1).gather(2, ids[:, 1:, None]).squeeze(-1)


@torch.no_grad()
def sample(m, prompts, max_new, temperature, end, pad):
    B = len(prompts)
    Lp = max(len(p) for p in prompts)
    ids = torch.full((B, Lp), pad, dtype=torch.long)
    pos = torch.zeros(B, Lp, dtype=torch.long)
    valid = torch.zeros(B, Lp + max_new, dtype=torch.bool)
    for b, p in enumerate(prompts):
        off = Lp - len(p)
        ids[b, off:] = torch.tensor(p)
        pos[b, off:] = torch.arange(len(p))
        valid[b, off:Lp] = True
    nxt = torch.tensor([len(p) for p in prompts])
    cap = Lp + max_new
    cache = [(torch.zeros(B, m.nKV, cap, m.D), torch.zeros(B, m.nKV, cap, m.D)) for _ in range(m.cfg["num_hidden_layers"])]
    causal = torch.ones(Lp, Lp, dtype=torch.bool).tril()
    mask = (causal[None, None] & valid[:, None, None, :Lp]) | torch.eye(Lp, dtype=torch.bool)[None, None]
    h = m(ids, pos, mask, cache, 0)
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    for t in range(max_new):
        logits = m.logits(h[:, -1]).float()
        tok = torch.multinomial(torch.softmax(logits / temperature, -1), 1).squeeze(1)
        tok = torch.where(done, torch.full_like(tok, pad), tok)
        for b in range(B):
            if not done[b]:
                out[b].append(int(tok[b]))
        done = done | (tok == end)
        if bool(done.all()) or t == max_new - 1:
            break
        valid[:, Lp + t] = ~done
        mask = valid[:, None, None, :Lp + t + 1]
        h = m(tok[:, None], nxt[:, None], mask, cache, Lp + t)
        nxt = nxt + 1
    return out


def main():
    pol_dir, rm_dir, wl_path = sys.argv[1], sys.argv[2], sys.argv[3]
    w = json.load(open(wl_path))
    torch.set_num_threads(w["threads"])
    torch.manual_seed(0)
    rnd = random.Random(0)
    pol, ref, rm = Llama(pol_dir), Llama(pol_dir), Llama(rm_dir)
    for p in list(ref.parameters()) + list(rm.parameters()):
        p.requires_grad_(False)
    opt = torch.optim.AdamW(pol.parameters(), lr=w["lr"], weight_decay=0.0)
    norm = float(w["max_new"])
    end, pad = w["end"], w["pad"]
    n_look = int(w["prompts"] * w["lookalike_ratio"] + 0.5)
    keys = ["generation", "scoring", "reference", "update_forward", "backward", "update", "step"]
    totals = {k: 0.0 for k in keys}
    lens = []
    for batch in range(w["batches"] + 1):
        ph = {k: 0.0 for k in keys}
        t_step = time.perf_counter()
        # Rollout: prompts (finding prompts and look-alikes), G samples each.
        texts = [rnd.choice(w["finding_prompts"]) for _ in range(w["prompts"] - n_look)]
        texts += [rnd.choice(w["lookalikes"]) for _ in range(n_look)]
        flat = [p for p in texts for _ in range(w["group"])]
        t0 = time.perf_counter()
        pol.eval()
        gens = sample(pol, flat, w["max_new"], w["temperature"], end, pad)
        # A response closes its turn with the end token.
        seqs = [(p, g if g and g[-1] == end else g + [end]) for p, g in zip(flat, gens)]
        ph["generation"] = time.perf_counter() - t0
        lens.append(sum(len(r) for _, r in seqs) / len(seqs))
        t0 = time.perf_counter()
        ids, pos, mask, last, resp = right_pad(seqs, pad)
        with torch.no_grad():
            h = rm(ids, pos, mask)
            rewards = F.linear(h[torch.arange(len(seqs)), last], rm.w("score.weight"))[:, 0]
        ph["scoring"] = time.perf_counter() - t0
        # Dr. GRPO advantage: reward minus the group mean, no std division.
        g = rewards.view(-1, w["group"])
        adv = (g - g.mean(1, keepdim=True)).reshape(-1)
        t0 = time.perf_counter()
        with torch.no_grad():
            old = token_logprobs(pol, ids, pos, mask)
            ref_lp = token_logprobs(ref, ids, pos, mask)
        ph["reference"] = time.perf_counter() - t0
        N = len(seqs)
        for _ in range(w["updates"]):
            t0 = time.perf_counter()
            pol.train()
            logp = token_logprobs(pol, ids, pos, mask)
            ratio = (logp - old).masked_fill(resp == 0, 0).exp()
            a = adv[:, None]
            obj = torch.minimum(ratio * a, ratio.clamp(1 - w["clip_eps"], 1 + w["clip_eps"]) * a)
            loss = -(obj * resp).sum() / (N * norm)
            d = (logp - ref_lp).masked_fill(resp == 0, 0)
            loss = loss + w["kl"] * (((-d).exp() + d - 1) * resp).sum() / (N * norm)
            harm = [rnd.choice(w["harmful"]) for _ in range(w["prompts"])]
            hi, hp, hm, _, hr = right_pad(harm, pad)
            hl = token_logprobs(pol, hi, hp, hm).masked_fill(hr == 0, -1)
            c = math.log1p(-UL_MIN_COMPLEMENT)
            slope = (1 - UL_MIN_COMPLEMENT) / UL_MIN_COMPLEMENT
            hc = hl.clamp(max=c)
            ul = -torch.log1p(-hc.exp()) + (hl - hc) * slope
            loss = loss + w["unlikelihood"] * (ul * hr).sum() / (len(harm) * norm)
            rep = [rnd.choice(w["replay_data"]) for _ in range(w["replay_batch"])]
            ri, rp, rmask, _, rr = right_pad(rep, pad)
            loss = loss + w["replay"] * -(token_logprobs(pol, ri, rp, rmask) * rr).sum() / rr.sum()
            ph["update_forward"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            ph["backward"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            torch.nn.utils.clip_grad_norm_(pol.parameters(), w["clip"])
            opt.step()
            ph["update"] += time.perf_counter() - t0
        ph["step"] = time.perf_counter() - t_step
        print(f"peer batch {batch}: {ph['step']:.2f} s", file=sys.stderr)
        if batch > 0:  # the first batch is a warm-up
            for k in keys:
                totals[k] += ph[k]
    out = {"torch": torch.__version__, "phases": {k: v / w["batches"] for k, v in totals.items()},
           "response_len": sum(lens[1:]) / max(len(lens) - 1, 1)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
