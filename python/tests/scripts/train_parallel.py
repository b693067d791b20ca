"""Data-parallel training from Python in the way of Caffe's
examples/pycaffe/train.py: the parent makes a uid, each child process sets its
solver count and rank, builds its solver, joins the group with caffe.NCCL,
takes rank 0's weights (bcast), registers the NCCL callback and steps; rank 0
writes the snapshot. With `timing`, rank 0 also times every layer's forward
and backward with net callbacks and logs them at each display, as that
example's --timing does.

    python train_parallel.py solver.prototxt ITERATIONS RANKS [cpu|gpu] [timing]
"""
import multiprocessing
import sys


def time_layers(solver, nccl):
    import caffe

    net = solver.net
    names = list(net._layer_names)
    forward = [caffe.Timer() for _ in names]
    backward = [caffe.Timer() for _ in names]
    step, reduce = caffe.Timer(), caffe.Timer()

    def report():
        if solver.iter % solver.param.display:
            return
        lines = ["forw %3d %8s : %.2f" % (i, n, forward[i].ms) for i, n in enumerate(names)]
        lines += ["back %3d %8s : %.2f" % (i, names[i], backward[i].ms) for i in reversed(range(len(names)))]
        lines += ["solver total: %.2f" % step.ms, "allreduce: %.2f" % reduce.ms]
        caffe.log("\n" + "\n".join(lines))

    net.before_forward(lambda i: forward[i].start())
    net.after_forward(lambda i: forward[i].stop())
    net.before_backward(lambda i: backward[i].start())
    net.after_backward(lambda i: backward[i].stop())
    solver.add_callback(lambda: step.start(), lambda: (step.stop(), reduce.start()))
    solver.add_callback(nccl)
    solver.add_callback(lambda: None, lambda: (reduce.stop(), report()))


def solve(proto, uid, rank, count, iterations, mode, timing):
    import caffe

    if mode == "gpu":
        caffe.set_device(rank)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    caffe.set_solver_count(count)
    caffe.set_solver_rank(rank)
    caffe.set_multiprocess(True)
    solver = caffe.SGDSolver(proto)
    nccl = caffe.NCCL(solver, uid)
    nccl.bcast()
    if timing and rank == 0:
        time_layers(solver, nccl)
    elif solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    else:
        solver.add_callback(nccl)
    solver.step(iterations)
    if rank == 0:
        solver.snapshot()


def main():
    proto, iterations, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    timing = len(sys.argv) > 5 and sys.argv[5] == "timing"
    import caffe

    uid = caffe.NCCL.new_uid()
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=solve, args=(proto, uid, rank, count, iterations, mode, timing)) for rank in range(count)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [rank for rank, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        sys.exit("ranks %s failed" % failed)


if __name__ == "__main__":
    main()
