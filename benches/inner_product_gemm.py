#!/usr/bin/env python3
"""InnerProduct's three forms for a TEST forward on the CPU, in libtorch
through PyTorch: x·Wᵀ (F.linear), W·xᵀ transposed back, and oneDNN's inner
product on the plain weights (mkldnn::_linear_pointwise), for the fully
connected shapes of the corpus' nets at several batch sizes, with the form the
layer picks (src/layers/common/inner_product.rs: inference_gemm).
Usage: .venv/bin/python benches/inner_product_gemm.py [THREADS]  (idle machine)"""
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)


def best_ms(f, rounds=3, n=10):
    f()
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(n):
            f()
        best = min(best, (time.perf_counter() - t) * 1000 / n)
    return best



def picks(m, k, n):
    if k * n >= 2_000_000:
        return "oneDNN"
    if 4 <= m <= 32 and n >= 500:
        return "W·xᵀ"
    return "x·Wᵀ"


print("| K (inputs) | N (outputs) | batch | x·Wᵀ ms | W·xᵀ ms | oneDNN ms | layer picks |")
print("|---|---|---|---|---|---|---|")
for k, n in [(9216, 4096), (4096, 4096), (4096, 1000), (2048, 1000), (1024, 1000), (800, 500), (500, 10)]:
    for m in (1, 2, 4, 10, 16, 32, 64, 256):
        x, w, b = torch.rand(m, k), torch.rand(n, k), torch.rand(n)
        with torch.no_grad():
            a = best_ms(lambda: torch.addmm(b, x, w.t()))
            c = best_ms(lambda: torch.addmm(b.unsqueeze(1), w, x.t()).t().contiguous())
            d = best_ms(lambda: torch.ops.mkldnn._linear_pointwise(x, w, b, "none", [], ""))
        print(f"| {k} | {n} | {m} | {a:.3f} | {c:.3f} | {d:.3f} | {picks(m, k, n)} |")
