"""Writes a more_export directory (adapters.safetensors + adapter_config.json) of random MoRE
adapters for a model of any size, without training: for measuring merges of large models
(launch/merge_7b.sh). Each module's gate selects a fixed rank (gate_w = 0, one clear gate_b),
different per module; B is random so the merge changes every adapted weight.
Usage: synthetic_export.py MODEL_DIR OUT_DIR [--rank 8] [--tasks a,b] [--seed 0]
"""
import argparse
import json
import os
import zlib

import torch
from safetensors.torch import save_file

KINDS = ["q", "k", "v", "o", "gate", "up", "down"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model")
    ap.add_argument("out")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--tasks", default="sentiment,topic")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    c = json.load(open(os.path.join(a.model, "config.json")))
    d, inter, L = c["hidden_size"], c["intermediate_size"], c["num_hidden_layers"]
    h, kv = c["num_attention_heads"], c.get("num_key_value_heads", c["num_attention_heads"])
    hd = d // h
    shapes = {"q": (d, h * hd), "k": (d, kv * hd), "v": (d, kv * hd), "o": (h * hd, d),
              "gate": (d, inter), "up": (d, inter), "down": (inter, d)}  # (d_in, d_out)
    tasks = a.tasks.split(",")
    g = torch.Generator().manual_seed(a.seed)
    r = a.rank
    tensors, ranks = {}, {}
    for i in range(L):
        for j, kind in enumerate(KINDS):
            din, dout = shapes[kind]
            n = f"layers.{i}.{kind}"
            k = (i + j) % r
            tensors[n + ".A"] = (torch.rand(r, din, generator=g) * 2 - 1) / din ** 0.5
            tensors[n + ".B"] = torch.randn(dout, r, generator=g) * 0.01
            tensors[n + ".E"] = torch.randn(len(tasks), din, generator=g) * 0.01
            tensors[n + ".gate_w"] = torch.zeros(r, din)
            gb = torch.zeros(r)
            gb[k] = 1.0
            tensors[n + ".gate_b"] = gb
            ranks[n] = [k + 1] * len(tasks)
    meta = {"format_version": "1"}
    for name, t in tensors.items():
        meta["crc32." + name] = str(zlib.crc32(t.contiguous().numpy().tobytes()))
    os.makedirs(a.out, exist_ok=True)
    save_file(tensors, os.path.join(a.out, "adapters.safetensors"), metadata=meta)
    cfg = {"format_version": 1, "method": "more", "rank": r, "alpha": 2.0 * r, "scaling": "paper",
           "selection": "ste", "targets": KINDS, "tasks": tasks, "task_ranks": ranks, "base_model": c}
    json.dump(cfg, open(os.path.join(a.out, "adapter_config.json"), "w"), indent=2)
    print(f"wrote {a.out}: {L} layers x {len(KINDS)} modules, rank {r}, tasks {tasks}")


if __name__ == "__main__":
    main()
