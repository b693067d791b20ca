"""Data-parallel training from Python in the way of Caffe's
examples/pycaffe/train.py: the parent makes a uid, each child process sets its
solver count and rank, builds its solver, joins the group with caffe.NCCL,
takes rank 0's weights (bcast), registers the NCCL callback and steps; rank 0
writes the snapshot.

    python train_parallel.py solver.prototxt ITERATIONS RANKS [cpu|gpu]
"""
import multiprocessing
import sys


def solve(proto, uid, rank, count, iterations, mode):
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
    if solver.param.layer_wise_reduce:
        solver.net.after_backward(nccl)
    else:
        solver.add_callback(nccl)
    solver.step(iterations)
    if rank == 0:
        solver.snapshot()


def main():
    proto, iterations, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    mode = sys.argv[4] if len(sys.argv) > 4 else "cpu"
    import caffe

    uid = caffe.NCCL.new_uid()
    spawn = multiprocessing.get_context("spawn")
    procs = [spawn.Process(target=solve, args=(proto, uid, rank, count, iterations, mode)) for rank in range(count)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [rank for rank, p in enumerate(procs) if p.exitcode != 0]
    if failed:
        sys.exit("ranks %s failed" % failed)


if __name__ == "__main__":
    main()
