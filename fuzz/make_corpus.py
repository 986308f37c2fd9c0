#!/usr/bin/env python3
"""Writes the seed corpus of every fuzz target (fuzz/README.md) into OUT/<target>/.

Seeds are small valid inputs (and a few near-misses) made here from the formats' rules and from
the repository's own examples, so libFuzzer starts from inputs that reach deep into each reader.
Usage: make_corpus.py OUT   (standard library only)
"""
import json
import os
import struct
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def put(out, target, name, data):
    d = os.path.join(out, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None, pad=True, length_delta=0):
    """tensors: [(name, dtype, shape, bytes)], laid out in the order given."""
    sizes = {"F64": 8, "I64": 8, "F32": 4, "I32": 4, "F16": 2, "BF16": 2, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
    header, data, off = {}, b"", 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        n = 1
        for s in shape:
            n *= s
        raw = raw if raw is not None else bytes((i * 7) & 255 for i in range(n * sizes[dtype]))
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [off, off + len(raw)]}
        off += len(raw)
        data += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    if pad:
        text += b" " * ((8 - len(text) % 8) % 8)
    return struct.pack("<Q", len(text) + length_delta) + text + data


def main():
    out = sys.argv[1]
    # ---- safetensors
    t = "fuzz_safetensors_header"
    put(out, t, "empty_header", safetensors([]))
    put(out, t, "one_f32", safetensors([("w", "F32", [2, 3], None)]))
    put(out, t, "every_dtype", safetensors([(d.lower(), d, [2], None) for d in
                                             ["F64", "I64", "F32", "I32", "F16", "BF16", "I16", "I8", "U8", "BOOL"]],
                                            metadata={"format": "pt", "crc32.w": "0"}))
    put(out, t, "zero_sized", safetensors([("a", "F32", [0, 4], None), ("b", "U8", [3], None)]))
    put(out, t, "scalar", safetensors([("s", "F64", [], None)]))
    put(out, t, "llama_like", safetensors([("model.embed_tokens.weight", "BF16", [16, 8], None),
                                           ("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 8], None),
                                           ("model.norm.weight", "F32", [8], None)]))
    put(out, t, "header_one_short", safetensors([("w", "F32", [2], None)], length_delta=-1))
    put(out, t, "unpadded", safetensors([("w", "I16", [3], None)], pad=False))
    # ---- TOML run configs: the repository's own, plus a small one per section
    t = "fuzz_toml_config"
    for d in ("launch", "tests", "docs"):
        for dirpath, _, files in os.walk(os.path.join(ROOT, d)):
            for f in files:
                if f.endswith(".toml"):
                    with open(os.path.join(dirpath, f), "rb") as fh:
                        put(out, t, f, fh.read())
    put(out, t, "small.toml", '[model]\npath = "m"\n[adapter]\nmethod = "more"\nrank = 8\nalpha = 16.0\n'
                              '[train]\nsteps = 10\nlr = 1e-4\nbeta2 = 0.999\n[data]\nsampling = "paper"\n'
                              '[parallel]\ntp = 1\npp = 1\ntimeout_s = 600\n')
    put(out, t, "empty.toml", "")
    # ---- HF config.json
    t = "fuzz_hf_config"
    base = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "max_position_embeddings": 128, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": False, "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2}
    put(out, t, "tiny.json", json.dumps(base, indent=2))
    put(out, t, "minimal.json", json.dumps({k: base[k] for k in ("vocab_size", "hidden_size", "intermediate_size",
                                                                   "num_hidden_layers", "num_attention_heads")}))
    put(out, t, "rope_scaling.json", json.dumps(dict(base, rope_scaling={"type": "linear", "factor": 2.0},
                                                     eos_token_id=[2, 3], torch_dtype="bfloat16")))
    # ---- task files: the bundled tasks' first rows (JSONL: first byte even; TSV: odd)
    t = "fuzz_task_jsonl"
    bundled = os.path.join(ROOT, "shard_data", "bundled")
    n = 0
    for dirpath, _, files in sorted(os.walk(bundled)):
        for f in sorted(files):
            if f.endswith(".jsonl") and n < 12:
                with open(os.path.join(dirpath, f), "rb") as fh:
                    put(out, t, f"bundled_{n}", b"J" + b"".join(fh.readlines()[:4]))
                n += 1
    put(out, t, "labels", b"J" + b'{"input": "a", "target": "positive"}\n{"input": "b", "target": "x", "label": "negative"}\n'
                                 b'{"input": "c", "target": "0.5", "label": 2.5}\n\n{"input": "d", "target": "e", "label": null}\r\n')
    put(out, t, "tsv", b"K" + b"a\tpositive\nb\tx\tnegative\nc\t0.25\n")
    # ---- PEFT adapter_config.json
    t = "fuzz_peft_config"
    peft = {"peft_type": "LORA", "r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none",
            "use_rslora": False, "use_dora": False, "fan_in_fan_out": False, "modules_to_save": None,
            "rank_pattern": {}, "alpha_pattern": {}, "lora_dropout": 0.05, "task_type": "CAUSAL_LM"}
    put(out, t, "lora.json", json.dumps(peft, indent=2))
    put(out, t, "patterns.json", json.dumps(dict(peft, use_rslora=True, rank_pattern={"q_proj": 4, "layers.0.self_attn.v_proj": 2},
                                                 alpha_pattern={"v_proj": 8.5})))
    put(out, t, "ia3.json", json.dumps({"peft_type": "IA3", "target_modules": ["k_proj"]}))


if __name__ == "__main__":
    main()
