#!/usr/bin/env python3
"""Caffe's 20 LeNet SGD steps (fixtures/lenet/sgd20) computed in float64 and float32
by an independent PyTorch replica of the net and of Caffe's SGD rule, against
BVLC Caffe's trace (loss.txt) and final weights (params_after20/).
Run from the repository root: .venv/bin/python experiments/sgd_exact/lenet_sgd20.py
"""
import numpy as np
import torch
import torch.nn.functional as F

torch.set_num_threads(1)
FIX = 'tests/fixtures/caffe-ref/fixtures/lenet/'
NAMES = ['conv1_0', 'conv1_1', 'conv2_0', 'conv2_1', 'ip1_0', 'ip1_1', 'ip2_0', 'ip2_1']
X = np.load('tests/fixtures/solver/fmnist_train_first1280_images_u8.npy')
Y = np.load('tests/fixtures/solver/fmnist_train_first1280_labels_u8.npy')
REF = [float(l.split()[1]) for l in open(FIX + 'sgd20/loss.txt') if not l.startswith('#')]
SCALE = 0.00390625  # Caffe's transform_param scale


def run(dt):
    """20 steps of lenet_solver from Caffe's start weights: (losses, final weights)."""
    W = {k: torch.tensor(np.load(FIX + 'params/' + k + '.npy')).to(dt) for k in NAMES}
    H = {k: torch.zeros_like(v) for k, v in W.items()}
    losses = []
    for it in range(20):
        x = torch.tensor(X[it * 64:(it + 1) * 64]).to(dt).reshape(64, 1, 28, 28) * SCALE
        y = torch.tensor(Y[it * 64:(it + 1) * 64]).long().reshape(-1)
        for v in W.values():
            v.requires_grad_(True)
        h = F.max_pool2d(F.conv2d(x, W['conv1_0'], W['conv1_1']), 2, 2, ceil_mode=True)
        h = F.max_pool2d(F.conv2d(h, W['conv2_0'], W['conv2_1']), 2, 2, ceil_mode=True)
        h = F.relu(F.linear(h.reshape(64, -1), W['ip1_0'], W['ip1_1']))
        loss = F.cross_entropy(F.linear(h, W['ip2_0'], W['ip2_1']), y)
        losses.append(loss.item())
        grads = torch.autograd.grad(loss, list(W.values()))
        lr = np.float32(0.01 * (1 + np.float32(0.0001) * it) ** (-0.75))  # inv policy, as Caffe's float
        with torch.no_grad():
            for (k, v), g in zip(list(W.items()), grads):
                v = v.detach()
                lr_mult = 2 if k.endswith('_1') else 1  # biases
                H[k] = 0.9 * H[k] + float(lr) * lr_mult * (g + 0.0005 * v)
                W[k] = v - H[k]
    return losses, W


l64, W64 = run(torch.float64)
l32, W32 = run(torch.float32)
for i, (a, b, c) in enumerate(zip(REF, l64, l32)):
    print(f"{i:2d} caffe {a:.8f} f64 {b:.8f} f32 {c:.8f}  caffe-f64 {abs(a-b)/a:.2e}  f32-f64 {abs(c-b)/b:.2e}")
for k in NAMES:
    c = torch.tensor(np.load(FIX + 'sgd20/params_after20/' + k + '.npy')).double()
    a, b = W64[k], W32[k].double()
    print(k, "caffe-f64 relL2 %.2e  f32-f64 relL2 %.2e  caffe-f64 max %.2e"
          % ((c - a).norm() / a.norm(), (b - a).norm() / a.norm(), (c - a).abs().max()))
