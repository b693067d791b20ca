#!/usr/bin/env python3
"""Caffe's 20 LeNet SGD steps (fixtures/lenet/sgd20) computed in float64 and float32
by an independent PyTorch replica of the net and of Caffe's SGD rule, against
BVLC Caffe's trace (loss.txt) and final weights (params_after20/).
Run from the repository root: .venv/bin/python experiments/sgd_exact/lenet_sgd20.py
"""
import numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)
P='tests/fixtures/caffe-ref/fixtures/lenet/params/'
X=np.load('tests/fixtures/solver/fmnist_train_first1280_images_u8.npy'); Y=np.load('tests/fixtures/solver/fmnist_train_first1280_labels_u8.npy')
ref=[float(l.split()[1]) for l in open('tests/fixtures/caffe-ref/fixtures/lenet/sgd20/loss.txt') if not l.startswith('#')]
def run(dt, wd_fma=False):
    W={k: torch.tensor(np.load(P+k+'.npy')).to(dt) for k in ['conv1_0','conv1_1','conv2_0','conv2_1','ip1_0','ip1_1','ip2_0','ip2_1']}
    H={k: torch.zeros_like(v) for k,v in W.items()}
    losses=[]
    for it in range(20):
        x=torch.tensor(X[it*64:(it+1)*64]).to(dt).reshape(64,1,28,28)*dt_scale(dt); y=torch.tensor(Y[it*64:(it+1)*64]).long().reshape(-1)
        for v in W.values(): v.requires_grad_(True)
        h=F.conv2d(x,W['conv1_0'],W['conv1_1']); h=F.max_pool2d(h,2,2,ceil_mode=True)
        h=F.conv2d(h,W['conv2_0'],W['conv2_1']); h=F.max_pool2d(h,2,2,ceil_mode=True)
        h=F.relu(F.linear(h.reshape(64,-1),W['ip1_0'],W['ip1_1'])); h=F.linear(h,W['ip2_0'],W['ip2_1'])
        loss=F.cross_entropy(h,y); losses.append(loss.item())
        g=torch.autograd.grad(loss,list(W.values()))
        lr=np.float32(0.01*(1+np.float32(0.0001)*it)**(-0.75))
        with torch.no_grad():
            for (k,v),gk in zip(list(W.items()),g):
                v=v.detach(); mult=2 if k.endswith('_1') else 1
                d=gk+0.0005*v
                H[k]=0.9*H[k]+float(lr)*mult*d
                W[k]=v-H[k]
    return losses
def dt_scale(dt):
    return 0.00390625  # Caffe's transform_param scale
l64=run(torch.float64); l32=run(torch.float32)
for i,(a,b,c) in enumerate(zip(ref,l64,l32)):
    print(f"{i:2d} caffe {a:.8f} f64 {b:.8f} f32 {c:.8f}  caffe-f64 {abs(a-b)/a:.2e}  f32-f64 {abs(c-b)/b:.2e}")

def run_params(dt):
    W={k: torch.tensor(np.load(P+k+'.npy')).to(dt) for k in ['conv1_0','conv1_1','conv2_0','conv2_1','ip1_0','ip1_1','ip2_0','ip2_1']}
    H={k: torch.zeros_like(v) for k,v in W.items()}
    for it in range(20):
        x=torch.tensor(X[it*64:(it+1)*64]).to(dt).reshape(64,1,28,28)*0.00390625; y=torch.tensor(Y[it*64:(it+1)*64]).long().reshape(-1)
        for v in W.values(): v.requires_grad_(True)
        h=F.conv2d(x,W['conv1_0'],W['conv1_1']); h=F.max_pool2d(h,2,2,ceil_mode=True)
        h=F.conv2d(h,W['conv2_0'],W['conv2_1']); h=F.max_pool2d(h,2,2,ceil_mode=True)
        h=F.relu(F.linear(h.reshape(64,-1),W['ip1_0'],W['ip1_1'])); h=F.linear(h,W['ip2_0'],W['ip2_1'])
        loss=F.cross_entropy(h,y)
        g=torch.autograd.grad(loss,list(W.values()))
        lr=np.float32(0.01*(1+np.float32(0.0001)*it)**(-0.75))
        with torch.no_grad():
            for (k,v),gk in zip(list(W.items()),g):
                v=v.detach(); mult=2 if k.endswith('_1') else 1
                H[k]=0.9*H[k]+float(lr)*mult*(gk+0.0005*v); W[k]=v-H[k]
    return W
W64=run_params(torch.float64); W32=run_params(torch.float32)
A='tests/fixtures/caffe-ref/fixtures/lenet/sgd20/params_after20/'
for k in W64:
    c=torch.tensor(np.load(A+k+'.npy')).double(); a=W64[k]; b=W32[k].double()
    print(k, "caffe-f64 relL2 %.2e  f32-f64 relL2 %.2e  caffe-f64 max %.2e" % ((c-a).norm()/a.norm(), (b-a).norm()/a.norm(), (c-a).abs().max()))
