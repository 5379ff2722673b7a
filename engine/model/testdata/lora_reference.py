"""A PEFT-layout LoRA adapter and its reference outputs, in plain PyTorch.

Writes a LoRA adapter for a Hugging Face model directory written by the Go
engine, in PEFT's layout (adapter_config.json and adapter_model.safetensors
with PEFT's tensor names: base_model.model.<module>.lora_A.weight [r, in],
lora_B.weight [out, r], modules to save under base_model.model.<name>), then
runs the model with the adapter in float64 and writes log-probabilities (or
reward scores) to OUT_DIR/reference.safetensors.

The adapted weight of a targeted projection is W + s * B @ A with
s = lora_alpha / r (or lora_alpha / sqrt(r) with use_rslora); GPT-2's Conv1D
weights are stored [in, out], so their update is added transposed (PEFT's
fan_in_fan_out). The forward itself is torch_reference.py's.

usage: lora_reference.py MODEL_DIR BATCH_JSON OUT_DIR ADAPTER_DIR SPEC_JSON
SPEC_JSON: {"r", "alpha", "rslora", "targets": [...], "modules_to_save": [...], "seed"}
"""
import json
import math
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_reference as ref  # noqa: E402


def main():
    model_dir, batch_path, out_dir, adapter_dir, spec_path = sys.argv[1:6]
    spec = json.load(open(spec_path))
    kind, ids, lens, _, mask = ref.read_batch(batch_path)
    cfg, W = ref.load_model(model_dir)
    gpt2 = cfg["model_type"] == "gpt2"
    r, alpha = spec["r"], spec["alpha"]
    s = alpha / math.sqrt(r) if spec["rslora"] else alpha / r
    torch.manual_seed(spec["seed"])
    adapter = {}
    targets = spec["targets"]
    linear = r"\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj|c_attn|c_proj|c_fc)\.weight$"
    for name in sorted(W):
        if not re.search(linear, name):
            continue
        module = name[: -len(".weight")]
        if not any(module == t or module.endswith("." + t) for t in targets):
            continue
        w = W[name]
        out_f, in_f = (w.shape[1], w.shape[0]) if gpt2 else w.shape
        # Rounded to float32 first: the file holds float32.
        A = (torch.randn(r, in_f, dtype=torch.float64) * 0.1).float().double()
        B = (torch.randn(out_f, r, dtype=torch.float64) * 0.1).float().double()
        adapter["base_model.model." + module + ".lora_A.weight"] = A
        adapter["base_model.model." + module + ".lora_B.weight"] = B
        delta = s * (B @ A)  # [out, in]
        W[name] = w + (delta.T if gpt2 else delta)
    for m in spec["modules_to_save"] or []:
        key = m + ".weight"
        new = (torch.randn(W[key].shape, dtype=torch.float64) * 0.1).float().double()
        adapter["base_model.model." + key] = new
        W[key] = new
    os.makedirs(adapter_dir, exist_ok=True)
    ref.save_safetensors(os.path.join(adapter_dir, "adapter_model.safetensors"), adapter)
    json.dump({
        "peft_type": "LORA", "task_type": "SEQ_CLS" if kind == "reward" else "CAUSAL_LM",
        "base_model_name_or_path": os.path.abspath(model_dir), "r": r, "lora_alpha": alpha,
        "lora_dropout": 0.0, "target_modules": targets, "use_rslora": spec["rslora"],
        "modules_to_save": spec["modules_to_save"] or None, "fan_in_fan_out": gpt2, "bias": "none",
        "inference_mode": True, "init_lora_weights": True, "use_dora": False,
        "layers_to_transform": None, "rank_pattern": {}, "alpha_pattern": {},
    }, open(os.path.join(adapter_dir, "adapter_config.json"), "w"), indent=2)

    with torch.no_grad():
        hidden, head = ref.model_forward(cfg, W, ids, mask)
        out = ref.outputs(kind, W, hidden, head, ids, lens)
    ref.save_safetensors(os.path.join(out_dir, "reference.safetensors"), out)


if __name__ == "__main__":
    main()
