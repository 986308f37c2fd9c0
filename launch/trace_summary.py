#!/usr/bin/env python3
"""Where a step's time goes: self time per operator of a Chrome trace written by
`more_bench train --bench.profile=PREFIX` (the autograd profiler's JSON), grouped.

Self time is an event's duration minus that of the events nested in it on the same thread, so
the groups add up to the time covered by operators without counting a parent and its children
twice; the last row is the rest of the span (host work between operators).
Usage: trace_summary.py TRACE.json [--top N]
"""
import argparse, collections, json

GROUPS = [  # first match wins
    ("GEMM (mm, addmm, bmm)", ("aten::mm", "aten::addmm", "aten::addmm_", "aten::bmm", "aten::baddbmm", "aten::matmul")),
    ("attention kernels (SDPA)", ("aten::_scaled_dot_product",)),
    ("copies and casts", ("aten::copy_", "aten::_to_copy", "aten::clone", "aten::contiguous")),
    ("elementwise (mul, add, silu, exp, ...)", ("aten::mul", "aten::add", "aten::sub", "aten::div", "aten::silu",
                                               "aten::exp", "aten::addcmul", "aten::rsqrt", "aten::sigmoid",
                                               "aten::pow", "aten::sqrt", "aten::neg", "aten::where")),
    ("reductions (sum, max, norm, softmax)", ("aten::sum", "aten::max", "aten::linalg_vector_norm", "aten::mean",
                                             "aten::_softmax", "aten::_log_softmax", "aten::nll_loss")),
    ("fills and allocation", ("aten::fill_", "aten::zero_", "aten::zeros", "aten::empty", "aten::ones")),
]


def self_times(events):
    by_tid = collections.defaultdict(list)
    for e in events:
        by_tid[e["tid"]].append(e)
    self_t, count = collections.Counter(), collections.Counter()
    for es in by_tid.values():
        es.sort(key=lambda e: (e["ts"], -e["dur"]))
        stack, child = [], {}
        for i, e in enumerate(es):
            while stack and es[stack[-1]]["ts"] + es[stack[-1]]["dur"] <= e["ts"]:
                stack.pop()
            if stack:
                child[stack[-1]] = child.get(stack[-1], 0.0) + e["dur"]
            stack.append(i)
        for i, e in enumerate(es):
            self_t[e["name"]] += e["dur"] - child.get(i, 0.0)
            count[e["name"]] += 1
    return self_t, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("trace")
    ap.add_argument("--top", type=int, default=12)
    a = ap.parse_args()
    data = json.load(open(a.trace))
    events = [e for e in (data if isinstance(data, list) else data["traceEvents"]) if e.get("ph") == "X"]
    span = max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)
    self_t, count = self_times(events)
    groups = collections.Counter()
    for name, t in self_t.items():
        g = next((g for g, prefixes in GROUPS if name.startswith(prefixes)), "other (autograd, views, framework)")
        groups[g] += t
    gaps = span - sum(groups.values())
    print(f"traced span {span / 1e6:.3f} s")
    print("| group | self time | share |\n|---|---|---|")
    for g, t in groups.most_common():
        print(f"| {g} | {t / 1e6:.3f} s | {100 * t / span:.1f}% |")
    print(f"| (between operators: no event) | {gaps / 1e6:.3f} s | {100 * gaps / span:.1f}% |")
    print(f"\ntop {a.top} operators by self time")
    for name, t in self_t.most_common(a.top):
        print(f"{t / 1e6:8.3f} s {100 * t / span:5.1f}% {count[name]:6d}x {name}")


if __name__ == "__main__":
    main()
