//! Data-parallel training over c10d's Gloo, with real `caffe train` processes
//! on loopback: Caffe's invariant (N ranks at batch B train as one at N·B),
//! the records each rank reads, faults (a rank killed), SIGINT through the
//! `-ranks` launcher, and the launcher's environment.
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use caffe_tch::data::db::{Backend, RecordReader};
use caffe_tch::dist::LaunchEnv;
use caffe_tch::proto::binary::{blob_data_f32, read_message};
use caffe_tch::proto::caffe::NetParameter;

use crate::common::caffe_ref;

fn caffe() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_caffe"));
    c.env("GLOG_logtostderr", "1").env_remove("WORLD_SIZE").env_remove("RANK").stdin(Stdio::null());
    c
}

/// Caffe's LeNet (sgd20's net, Data layer on the repo's 2,000-record train
/// LMDB) at `batch`, with Caffe's LeNet SGD settings; snapshots under `dir/out`.
fn lenet_solver(dir: &Path, batch: usize, settings: &str) -> PathBuf {
    lenet_solver_on(dir, batch, settings, &caffe_ref("lmdb/fmnist_train2k_lmdb"))
}

/// The 2,000-record train LMDB as `steps` blocks of `world` × `batch`
/// records read in order (wrapping at the end, as a reader does), each block
/// reordered so that one reader at `batch` reads, batch after batch, what
/// `world` ranks at `batch` read in one step: rank 0's records (those ≡ 0 mod
/// `world` in the block), then rank 1's, and so on. One process at iter_size
/// `world` on it adds the very gradients the ranks all-reduce.
fn rank_ordered_lmdb(dir: &Path, world: usize, batch: usize, steps: usize) -> PathBuf {
    let mut reader = RecordReader::open(&caffe_ref("lmdb/fmnist_train2k_lmdb"), Backend::Lmdb).unwrap();
    let block = world * batch;
    let sequence: Vec<Vec<u8>> = (0..steps * block)
        .map(|_| {
            let v = reader.value().to_vec();
            reader.advance().unwrap();
            v
        })
        .collect();
    let path = dir.join("rank_ordered_lmdb");
    let mut w = caffe_tch::data::DbWriter::create(&path, Backend::Lmdb).unwrap();
    let mut written = 0;
    for start in (0..sequence.len()).step_by(block) {
        for rank in 0..world {
            for k in (start + rank..start + block).step_by(world) {
                w.put(format!("{written:08}").as_bytes(), &sequence[k]);
                written += 1;
            }
        }
    }
    w.finish().unwrap();
    path
}

/// [`lenet_solver`] on another LMDB.
fn lenet_solver_on(dir: &Path, batch: usize, settings: &str, lmdb: &Path) -> PathBuf {
    let sgd20 = caffe_ref("fixtures/lenet/sgd20");
    let net = std::fs::read_to_string(sgd20.join("lenet_train_test.prototxt")).unwrap();
    assert!(net.contains("source: \"lmdb/fmnist_train_lmdb\"") && net.contains("batch_size: 64"));
    let net = net.replace("source: \"lmdb/fmnist_train_lmdb\"", &format!("source: \"{}\"", lmdb.display())).replacen(
        "batch_size: 64",
        &format!("batch_size: {batch}"),
        1,
    );
    let net_file = dir.join("net.prototxt");
    std::fs::write(&net_file, net).unwrap();
    std::fs::create_dir_all(dir.join("out")).unwrap();
    // Caffe's LeNet solver, less the fields `settings` gives.
    let defaults = [
        "base_lr: 0.01",
        "momentum: 0.9",
        "weight_decay: 0.0005",
        "lr_policy: \"inv\"",
        "gamma: 0.0001",
        "power: 0.75",
    ];
    let given = |d: &str| settings.lines().any(|l| l.split(':').next() == d.split(':').next());
    let base: Vec<&str> = defaults.into_iter().filter(|d| !given(d)).collect();
    let solver = format!(
        "net: \"{}\"\n{}\nsolver_mode: CPU\nsnapshot_prefix: \"{}\"\n{settings}\n",
        net_file.display(),
        base.join("\n"),
        dir.join("out/lenet").display()
    );
    let file = dir.join("solver.prototxt");
    std::fs::write(&file, solver).unwrap();
    file
}

fn weights() -> String {
    caffe_ref("fixtures/lenet/weights.caffemodel").display().to_string()
}

/// `Iteration N (…), loss = X` lines: (N, X).
fn logged_losses(log: &str) -> Vec<(i64, f64)> {
    log.lines()
        .filter(|l| l.contains("] Iteration ") && l.contains(" iters), loss = "))
        .map(|l| {
            let after = l.split("] Iteration ").nth(1).unwrap();
            let iter = after.split_whitespace().next().unwrap().parse().unwrap();
            let loss = l.rsplit("loss = ").next().unwrap().trim().parse().unwrap();
            (iter, loss)
        })
        .collect()
}

/// Every blob of a .caffemodel, in order.
fn model_blobs(path: &Path) -> Vec<Vec<f32>> {
    let net: NetParameter = read_message(path).unwrap_or_else(|e| panic!("{e}"));
    net.layer.iter().flat_map(|l| l.blobs.iter().map(blob_data_f32)).collect()
}

/// (max |a − b|, max |b|) over all blobs.
fn weight_gap(a: &Path, b: &Path) -> (f64, f64) {
    let (a, b) = (model_blobs(a), model_blobs(b));
    assert_eq!(a.len(), b.len(), "blob count");
    let mut gap = 0.0f64;
    let mut max = 0.0f64;
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.len(), y.len(), "blob size");
        for (u, v) in x.iter().zip(y) {
            gap = gap.max((*u as f64 - *v as f64).abs());
            max = max.max((*v as f64).abs());
        }
    }
    (gap, max)
}

/// max over the first `steps` iterations of |a − b| / |b|.
fn max_rel(a: &[(i64, f64)], b: &[(i64, f64)], steps: usize) -> f64 {
    assert!(a.len() >= steps && b.len() >= steps, "{} and {} logged losses, {steps} needed", a.len(), b.len());
    let mut worst = 0.0f64;
    for k in 0..steps {
        assert_eq!(a[k].0, b[k].0, "iteration numbers");
        worst = worst.max((a[k].1 - b[k].1).abs() / b[k].1.abs());
    }
    worst
}

/// Runs one `caffe train` to the end; returns its stderr.
fn train_alone(solver: &Path) -> String {
    // One thread, as each rank has: a reduction's order can depend on the thread count.
    let out = caffe()
        .args(["train", "-solver", solver.to_str().unwrap(), "-weights", &weights()])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{err}");
    err
}

/// Starts `world` ranks of `caffe train` with the environment a launcher sets.
fn start_ranks(solver: &Path, world: usize, extra: &[&str]) -> Vec<Child> {
    start_ranks_with(&vec![solver; world], extra)
}

/// As [`start_ranks`], each rank with its own solver file.
fn start_ranks_with(solvers: &[&Path], extra: &[&str]) -> Vec<Child> {
    let w = weights();
    let args: Vec<Vec<&str>> =
        solvers.iter().map(|s| [&["-solver", s.to_str().unwrap(), "-weights", &w][..], extra].concat()).collect();
    start_ranks_args(&args)
}

/// Starts one `caffe train` rank per argument list (given after `train`).
fn start_ranks_args(args: &[Vec<&str>]) -> Vec<Child> {
    let port = caffe_tch::dist::launch::free_port().unwrap().to_string();
    let world = args.len();
    (0..world)
        .map(|rank| {
            caffe()
                .arg("train")
                .args(&args[rank])
                .env("RANK", rank.to_string())
                .env("LOCAL_RANK", rank.to_string())
                .env("WORLD_SIZE", world.to_string())
                .env("MASTER_ADDR", "127.0.0.1")
                .env("MASTER_PORT", &port)
                .env("OMP_NUM_THREADS", "1")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect()
}

/// Kills the children if the test fails before they exit.
struct Ranks(Vec<Child>);

impl Drop for Ranks {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The invariant of Caffe's multi-GPU training, with two real processes over
/// Gloo on loopback: 2 ranks at batch 32 and one process at batch 64, 20 LeNet
/// SGD steps from Caffe's weights.
///
/// Splitting a batch changes the order of float sums (two 32-sample
/// reductions added, against one of 64), and this trace amplifies such
/// differences from step 15 on (Caffe's own trace is 3.5e-4 from the exact
/// one at step 19, experiments/sgd_exact). So the ranks are also compared with
/// one process that reads their records in their order and adds them as the
/// all-reduce does (batch 32, iter_size 2, on [`rank_ordered_lmdb`]): that
/// must agree to 1e-5 at every step, and the weights to 1e-5 of max|w|
/// (measured: identical).
#[test]
fn two_ranks_at_32_train_as_one_at_64() {
    let tmp = tempfile::tempdir().unwrap();
    let (one, split, two) = (tmp.path().join("one"), tmp.path().join("split"), tmp.path().join("two"));
    for d in [&one, &split, &two] {
        std::fs::create_dir_all(d).unwrap();
    }
    let settings = "max_iter: 20\ndisplay: 1";
    let one_log = train_alone(&lenet_solver(&one, 64, settings));
    let split_log = train_alone(&lenet_solver_on(
        &split,
        32,
        &format!("{settings}\niter_size: 2"),
        &rank_ordered_lmdb(&split, 2, 32, 20),
    ));

    let start = Instant::now();
    let mut ranks = Ranks(start_ranks(&lenet_solver(&two, 32, settings), 2, &[]));
    let mut logs = Vec::new();
    for c in &mut ranks.0 {
        let mut s = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut s).unwrap();
        let status = c.wait().unwrap();
        assert!(status.success(), "{status:?}\n{s}");
        logs.push(s);
    }
    eprintln!("2 ranks: {:.2} s wall", start.elapsed().as_secs_f64());
    let (rank0, rank1) = (&logs[0], &logs[1]);
    assert!(rank0.contains("Data-parallel over 2 ranks"), "{rank0}");
    assert!(rank0.contains("] All-reduce: "), "{rank0}");
    // One log: rank 1 writes no info lines.
    assert!(!rank1.lines().any(|l| l.starts_with('I')), "rank 1 logged:\n{rank1}");

    let (ones, splits, twos) = (logged_losses(&one_log), logged_losses(&split_log), logged_losses(rank0));
    assert_eq!(twos.len(), 20, "{rank0}");
    let vs_split = max_rel(&twos, &splits, 20);
    let vs_one_early = max_rel(&twos, &ones, 15);
    let vs_one = max_rel(&twos, &ones, 20);
    let split_vs_one = max_rel(&splits, &ones, 20);
    eprintln!(
        "losses, max relative gap: 2 ranks vs batch 32 × iter_size 2 {vs_split:.2e} (20 steps); \
         2 ranks vs batch 64 {vs_one_early:.2e} (steps 0-14), {vs_one:.2e} (20 steps); \
         batch 32 × iter_size 2 vs batch 64 {split_vs_one:.2e}"
    );
    assert!(vs_split <= 1e-5, "2 ranks vs the same split in one process: {vs_split:.2e}");
    assert!(vs_one_early <= 1e-5, "2 ranks vs batch 64, steps 0-14: {vs_one_early:.2e}");
    assert!(vs_one <= 1e-4, "2 ranks vs batch 64, 20 steps: {vs_one:.2e}");
    // Both stay within the single run's bounds of BVLC Caffe's sgd20 trace (tests/solver.rs).
    let caffe: Vec<(i64, f64)> = std::fs::read_to_string(caffe_ref("fixtures/lenet/sgd20/loss.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let v: Vec<f64> = l.split_whitespace().map(|x| x.parse().unwrap()).collect();
            (v[0] as i64, v[1])
        })
        .collect();
    for (name, losses) in [("2 ranks", &twos), ("batch 64", &ones)] {
        let (early, all) = (max_rel(losses, &caffe, 17), max_rel(losses, &caffe, 20));
        eprintln!("{name} vs BVLC Caffe: {early:.2e} (steps 0-16), {all:.2e} (20 steps)");
        assert!(early <= 1e-4 && all <= 1e-3, "{name} vs Caffe: {early:.2e} {all:.2e}");
    }

    let snap = |d: &Path| d.join("out/lenet_iter_20.caffemodel");
    let (gap_split, max_w) = weight_gap(&snap(&two), &snap(&split));
    let (gap_one, _) = weight_gap(&snap(&two), &snap(&one));
    eprintln!(
        "final weights: max|Δ| {gap_split:.2e} vs batch 32 × iter_size 2, {gap_one:.2e} vs batch 64 (max|w| {max_w:.3})"
    );
    assert!(gap_split <= 1e-5 * max_w, "2 ranks vs the same split in one process: {gap_split:.2e}");
    // Measured 2.65e-5 (7.5e-5 of max|w|): the split's own rounding, as the single-process split shows.
    assert!(gap_one <= 3e-4 * max_w, "2 ranks vs batch 64: {gap_one:.2e}");
    // Only rank 0 snapshots (a second writer would have left a .tempfile probe race, or a second set).
    let files: Vec<String> = std::fs::read_dir(two.join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(files.len(), 2, "{files:?}");
}

/// Waits for every rank; each must succeed. Returns their stderr.
fn finish(ranks: &mut Ranks) -> Vec<String> {
    ranks
        .0
        .iter_mut()
        .map(|c| {
            let mut s = String::new();
            std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut s).unwrap();
            let status = c.wait().unwrap();
            assert!(status.success(), "{status:?}\n{s}");
            s
        })
        .collect()
}

/// Resume across sizes: a snapshot written by 2 ranks resumes in one process,
/// and one written by one process resumes over 2 ranks; both continue the
/// trace of the run that was never interrupted.
///
/// What "the same trace" can mean: each rank reads every N-th record, so a
/// resumed run reads the records that an uninterrupted run of *its own* shape
/// (ranks × iter_size × batch) reads from the snapshot's iteration on (the
/// solver moves the Data layer there; Caffe would start the DB over). When
/// that product is kept, every step sees the same records as the
/// uninterrupted run. Here it is 64 throughout: 2 ranks × batch 32, or one
/// process at batch 32 × iter_size 2 (the same net file, so the snapshot
/// loads as is). The reference is that one process straight through 15 steps.
///
/// Measured: the logged losses are identical (at the log's 6 digits) at every
/// step, before and after the resume. The weights: a resume at the same size
/// (the control) ends bit for bit on the straight run's; 1 → 2 ends 6e-8
/// away; 2 → 1 ends 1.6e-5 of max|w| away, because the ranks' first 5 steps
/// leave the weights 3e-8 from the single process's (they sum two halves of
/// interleaved records, it sums two contiguous halves) and LeNet's steps grow
/// that difference. Hence losses to 1e-5, weights to 1e-4 of max|w|.
/// (Reading the DB from its first record again, as Caffe does, puts 2 → 1
/// 11% off the straight run's losses.)
#[test]
fn a_snapshot_resumes_at_another_number_of_ranks() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ["straight", "two_then_one", "one_then_two", "one_then_one"].map(|d| tmp.path().join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let single = |max_iter: i32| format!("max_iter: {max_iter}\ndisplay: 1\niter_size: 2");
    let ranked = |max_iter: i32| format!("max_iter: {max_iter}\ndisplay: 1");
    let straight = logged_losses(&train_alone(&lenet_solver(&dirs[0], 32, &single(15))));
    let state = |d: &Path| d.join("out/lenet_iter_5.solverstate").display().to_string();
    let resume_alone = |dir: &Path, state: &str| {
        let solver = lenet_solver(dir, 32, &single(15));
        let out = caffe()
            .args(["train", "-solver", solver.to_str().unwrap(), "-snapshot", state])
            .env("OMP_NUM_THREADS", "1") // as train_alone
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{log}");
        assert!(log.contains(": resuming after 10 batches of 32"), "{log}");
        log
    };

    // 2 ranks for 5 steps, then one process.
    let first = finish(&mut Ranks(start_ranks(&lenet_solver(&dirs[1], 32, &ranked(5)), 2, &[])));
    let then = resume_alone(&dirs[1], &state(&dirs[1]));
    let two_then_one = [logged_losses(&first[0]), logged_losses(&then)].concat();

    // One process for 5 steps, then 2 ranks; and the control, one process again.
    let first = train_alone(&lenet_solver(&dirs[2], 32, &single(5)));
    let solver = lenet_solver(&dirs[2], 32, &ranked(15));
    let s = solver.to_str().unwrap();
    let then = finish(&mut Ranks(start_ranks_args(&vec![vec!["-solver", s, "-snapshot", &state(&dirs[2])]; 2])));
    assert!(then[0].contains(": resuming after 5 batches of 32 of this rank's share (1 in 2)"), "{}", then[0]);
    let one_then_two = [logged_losses(&first), logged_losses(&then[0])].concat();
    let one_then_one = [logged_losses(&first), logged_losses(&resume_alone(&dirs[3], &state(&dirs[2])))].concat();

    let last = |d: &Path| d.join("out/lenet_iter_15.caffemodel");
    for (name, losses, dir, weight_tol) in [
        ("2 → 1", &two_then_one, &dirs[1], 1e-4),
        ("1 → 2", &one_then_two, &dirs[2], 1e-4),
        ("1 → 1", &one_then_one, &dirs[3], 0.0),
    ] {
        assert_eq!(losses.iter().map(|l| l.0).collect::<Vec<_>>(), (0..15).collect::<Vec<_>>(), "{name}");
        let gap = max_rel(losses, &straight, 15);
        let (dw, max_w) = weight_gap(&last(dir), &last(&dirs[0]));
        eprintln!("resume {name}: losses {gap:.2e} from the straight run's, weights {:.2e} of max|w|", dw / max_w);
        assert!(gap <= 1e-5, "{name}: losses {gap:.2e} from the uninterrupted run");
        assert!(dw <= weight_tol * max_w, "{name}: final weights {dw:.2e} from the uninterrupted run's");
    }
}

/// How far 2 ranks at batch 32 are from one process at batch 64 (same
/// `settings`), and from one process that reads the ranks' records in the
/// ranks' order (batch 32 on [`rank_ordered_lmdb`], twice the iter_size):
/// (loss gap, weight gap) against each, the loss gap as the max relative
/// difference over 20 steps (`*_early`: over steps 0-14), the weight gap as
/// max|Δw| / max|w| after 20 steps.
struct Gaps {
    one: (f64, f64),
    one_early: f64,
    split: (f64, f64),
    split_early: f64,
}

fn two_ranks_against_one(settings: &str, iter_size: i32) -> Gaps {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = ["one", "split", "two"].map(|d| tmp.path().join(d));
    for d in &dirs {
        std::fs::create_dir_all(d).unwrap();
    }
    let with = |k: i32| format!("max_iter: 20\ndisplay: 1\niter_size: {k}\n{settings}");
    let one_log = train_alone(&lenet_solver(&dirs[0], 64, &with(iter_size)));
    let ordered = rank_ordered_lmdb(&dirs[1], 2, 32 * iter_size as usize, 20);
    let split_log = train_alone(&lenet_solver_on(&dirs[1], 32, &with(2 * iter_size), &ordered));
    let mut ranks = Ranks(start_ranks(&lenet_solver(&dirs[2], 32, &with(iter_size)), 2, &[]));
    let mut logs = Vec::new();
    for c in &mut ranks.0 {
        let mut s = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut s).unwrap();
        assert!(c.wait().unwrap().success(), "{s}");
        logs.push(s);
    }
    let twos = logged_losses(&logs[0]);
    let snap = |d: &Path| d.join("out/lenet_iter_20.caffemodel");
    let gap = |log: &str, dir: &Path| {
        let loss = max_rel(&twos, &logged_losses(log), 20);
        let (dw, max_w) = weight_gap(&snap(&dirs[2]), &snap(dir));
        (loss, dw / max_w)
    };
    Gaps {
        one: gap(&one_log, &dirs[0]),
        one_early: max_rel(&twos, &logged_losses(&one_log), 15),
        split: gap(&split_log, &dirs[1]),
        split_early: max_rel(&twos, &logged_losses(&split_log), 15),
    }
}

/// Adam: 2 ranks at 32 compute exactly what one process computes from the
/// same records in the same order (measured: identical losses and weights).
/// Against one process at batch 64 (one sum over 64 records, not two of 32
/// added) they agree to 1.3e-6 through step 17 on both hosts measured, but
/// Adam's step m/(√v + δ) is about lr in size wherever a gradient is rounding
/// noise (sums that nearly cancel), so the two orders of summation move such
/// weights apart: measured 1.3e-6 (losses) and 1.1e-5 of max|w| on one host,
/// 4.1e-5 from step 18 and 8.6e-4 of max|w| on another (AVX-512).
#[test]
fn adam_two_ranks_train_as_one() {
    let g = two_ranks_against_one(
        "type: \"Adam\"\nbase_lr: 0.001\nmomentum2: 0.999\ndelta: 1e-8\nlr_policy: \"fixed\"\nweight_decay: 0",
        1,
    );
    eprintln!(
        "Adam, 2 ranks × 32: vs 1 × 64 losses {:.2e} (steps 0-14 {:.2e}), weights {:.2e} of max|w|; \
         vs the ranks' records in one process: {:.2e}, {:.2e}",
        g.one.0, g.one_early, g.one.1, g.split.0, g.split.1
    );
    assert!(g.split.0 <= 1e-6 && g.split.1 <= 1e-6, "vs the same records in one process: {:?}", g.split);
    assert!(g.one_early <= 1e-5 && g.one.0 <= 1e-4 && g.one.1 <= 2e-3, "vs batch 64: {:?} {:.2e}", g.one, g.one_early);
}

/// iter_size 2: each rank accumulates two batches of 32 before the
/// all-reduce, so each step sees the same 128 records as one process at
/// 64 × 2. One process reading the ranks' records in their order (32 ×
/// iter_size 4) adds the same four batch gradients, associated differently
/// (((a + b) + c) + d against (a + b) + (c + d)), so no one-process run is
/// the ranks' sums exactly; SGD's trace amplifies such rounding from step 15
/// on (as in two_ranks_at_32_train_as_one_at_64). Measured on one host: vs 64 ×
/// 2 identical losses and 2.1e-7 of max|w|; vs the ranks' order identical
/// through step 14, then 4.1e-4 (losses) and 4.8e-4 of max|w|.
#[test]
fn iter_size_2_two_ranks_train_as_one() {
    let g = two_ranks_against_one("", 2);
    eprintln!(
        "SGD iter_size 2, 2 ranks × 32: vs 1 × 64 losses {:.2e} (steps 0-14 {:.2e}), weights {:.2e} of max|w|; \
         vs the ranks' records in one process: {:.2e}, {:.2e}",
        g.one.0, g.one_early, g.one.1, g.split.0, g.split.1
    );
    for (name, (losses, weights), early) in
        [("64 × 2", g.one, g.one_early), ("the ranks' order", g.split, g.split_early)]
    {
        assert!(
            early <= 1e-5 && losses <= 1e-3 && weights <= 1e-3,
            "vs {name}: {losses:.2e} {weights:.2e} {early:.2e}"
        );
    }
}

/// Caffe's record split: rank r of N keeps the records at offsets r, r+N, …;
/// over one pass of the DB the ranks read every record once.
#[test]
fn ranks_read_disjoint_records_covering_the_db() {
    let lmdb = caffe_ref("lmdb/fmnist_train2k_lmdb");
    let mut all = RecordReader::open(&lmdb, Backend::Lmdb).unwrap();
    let first = all.key().to_vec();
    let mut keys = vec![first.clone()];
    loop {
        all.advance().unwrap();
        if all.key() == first.as_slice() {
            break;
        }
        keys.push(all.key().to_vec());
    }
    assert_eq!(keys.len(), 2000);
    for world in [2usize, 3] {
        let mut seen = vec![0u32; keys.len()];
        for rank in 0..world {
            let mut r = RecordReader::open(&lmdb, Backend::Lmdb).unwrap();
            r.shard(rank, world).unwrap();
            let share = (keys.len() + world - 1 - rank) / world;
            for k in 0..share {
                let at = keys.iter().position(|x| x.as_slice() == r.key()).unwrap();
                assert_eq!(at % world, rank, "rank {rank} of {world}: its record {k} is at offset {at}");
                seen[at] += 1;
                r.advance().unwrap();
            }
        }
        assert!(seen.iter().all(|&n| n == 1), "world {world}: every record once");
    }
}

/// The same split through the Data layer itself (prefetch thread, shard,
/// wrap-around), on a DB of 23 records whose labels are their offsets (23:
/// neither 2 nor 3 divides it, so epochs start mid-step): at every step, rank
/// r of W at batch B reads the records one reader at batch W·B reads at that
/// step, its i-th being the single reader's (W·i + r)-th; so over each epoch
/// the ranks together read every record once. A rank moved to batch k (a
/// resumed run, many passes in) reads what the uninterrupted rank reads there.
#[test]
fn data_layer_ranks_read_the_single_readers_records() {
    use caffe_tch::data::{datum, set_train_shard, DbWriter};
    use caffe_tch::layers::{create_layer, Layer};
    use caffe_tch::proto::caffe::{Datum, Phase};
    let tmp = tempfile::tempdir().unwrap();
    let db = tmp.path().join("db");
    const RECORDS: usize = 23;
    let mut w = DbWriter::create(&db, Backend::Lmdb).unwrap();
    for i in 0..RECORDS {
        let d = Datum {
            channels: Some(1),
            height: Some(1),
            width: Some(1),
            data: Some(vec![i as u8]),
            label: Some(i as i32),
            ..Default::default()
        };
        w.put(format!("{i:08}").as_bytes(), &datum::to_bytes(&d));
    }
    w.finish().unwrap();
    let ctx = caffe_tch::layers::Ctx { phase: Phase::Train, iteration: 0, device: tch::Device::Cpu };
    // A TRAIN Data layer at `batch` for rank `rank` of `world` (the shard is per thread, as in Caffe).
    let data_layer = |batch: usize, rank: usize, world: usize| -> Box<dyn Layer> {
        set_train_shard(rank, world);
        let lp = crate::common::layer::lp(&format!(
            r#"name: "d" type: "Data" top: "data" top: "label" phase: TRAIN
               data_param {{ source: "{}" batch_size: {batch} backend: LMDB }}"#,
            db.display()
        ));
        let mut l = create_layer(&lp).unwrap();
        l.setup(&[]).unwrap();
        set_train_shard(0, 1);
        l
    };
    let labels = |l: &mut Box<dyn Layer>| -> Vec<usize> {
        let tops = l.forward(&ctx, &[], &[]).unwrap();
        crate::common::values_f32(&tops[1]).into_iter().map(|v| v as usize).collect()
    };
    let batch = 4;
    for world in [2usize, 3] {
        let steps = 2 * RECORDS.div_ceil(world * batch) + 1;
        let mut single = data_layer(world * batch, 0, 1);
        let mut ranks: Vec<_> = (0..world).map(|r| data_layer(batch, r, world)).collect();
        let mut union_in_order = Vec::new();
        for step in 0..steps {
            let whole = labels(&mut single);
            let expected: Vec<usize> = (0..world * batch).map(|j| (step * world * batch + j) % RECORDS).collect();
            assert_eq!(whole, expected, "the single reader, step {step}");
            let mut merged = vec![usize::MAX; world * batch];
            for (r, layer) in ranks.iter_mut().enumerate() {
                for (i, label) in labels(layer).into_iter().enumerate() {
                    merged[world * i + r] = label;
                }
            }
            assert_eq!(merged, whole, "{world} ranks at step {step}");
            union_in_order.extend(merged);
        }
        for (epoch, records) in union_in_order.chunks_exact(RECORDS).enumerate() {
            let mut seen = records.to_vec();
            seen.sort_unstable();
            assert_eq!(seen, (0..RECORDS).collect::<Vec<_>>(), "{world} ranks, epoch {epoch}: every record once");
        }
        for k in [1u64, 5, 1000] {
            for r in 0..world {
                let mut resumed = data_layer(batch, r, world);
                resumed.skip_to_batch(k).unwrap();
                let expected: Vec<usize> =
                    (0..batch).map(|i| (k as usize * world * batch + world * i + r) % RECORDS).collect();
                assert_eq!(labels(&mut resumed), expected, "rank {r} of {world} resumed at batch {k}");
            }
        }
    }
}

/// For 2 and 3 ranks at batch 2, with and without shuffle: at every step the
/// ranks together read what one reader at the whole batch reads (the layer
/// `text(batch, shuffle)`, built with a shared seed, labels = record offsets);
/// and, where `whole_passes(shuffle)`, every record once a pass.
fn assert_ranks_read_as_one(records: usize, text: impl Fn(usize, bool) -> String, whole_passes: impl Fn(bool) -> bool) {
    use caffe_tch::data::{set_shared_seed, set_train_shard};
    use caffe_tch::layers::{create_layer, Layer};
    use caffe_tch::proto::caffe::Phase;
    let ctx = caffe_tch::layers::Ctx { phase: Phase::Train, iteration: 0, device: tch::Device::Cpu };
    let layer = |batch: usize, rank: usize, world: usize, shuffle: bool| -> Box<dyn Layer> {
        set_train_shard(rank, world);
        set_shared_seed(Some(7));
        let mut l = create_layer(&crate::common::layer::lp(&text(batch, shuffle))).unwrap();
        l.setup(&[]).unwrap();
        set_train_shard(0, 1);
        set_shared_seed(None);
        l
    };
    let labels = |l: &mut Box<dyn Layer>| -> Vec<usize> {
        let tops = l.forward(&ctx, &[], &[]).unwrap();
        crate::common::values_f32(&tops[1]).into_iter().map(|v| v as usize).collect()
    };
    let batch = 2;
    for world in [2usize, 3] {
        for shuffle in [false, true] {
            // The single reader orders the records with the same shared seed.
            let mut single = layer(world * batch, 0, 1, shuffle);
            let mut ranks: Vec<_> = (0..world).map(|r| layer(batch, r, world, shuffle)).collect();
            let mut merged_in_order = Vec::new();
            for step in 0..2 * records.div_ceil(world * batch) + 1 {
                let mut merged = vec![usize::MAX; world * batch];
                for (r, l) in ranks.iter_mut().enumerate() {
                    for (i, label) in labels(l).into_iter().enumerate() {
                        merged[world * i + r] = label;
                    }
                }
                assert_eq!(merged, labels(&mut single), "{world} ranks at step {step}, shuffle {shuffle}");
                merged_in_order.extend(merged);
            }
            if whole_passes(shuffle) {
                for (pass, chunk) in merged_in_order.chunks_exact(records).enumerate() {
                    let mut seen = chunk.to_vec();
                    seen.sort_unstable();
                    assert_eq!(seen, (0..records).collect::<Vec<_>>(), "{world} ranks, shuffle {shuffle}, pass {pass}");
                }
            }
        }
    }
}

/// ImageData splits its list as Data splits a DB, when every rank orders
/// the list alike: at every step the ranks read what one reader at the whole
/// batch reads, so each epoch every image once; with shuffle and a random
/// skip too, ordering with the seed they share (the solver's random_seed, as
/// the single reader here). 11 images, so epochs start mid-step.
#[test]
fn image_data_ranks_split_the_list() {
    const IMAGES: usize = 11;
    let tmp = tempfile::tempdir().unwrap();
    let mut list = String::new();
    for i in 0..IMAGES {
        let name = format!("img{i}.png");
        image::GrayImage::from_pixel(2, 2, image::Luma([i as u8])).save(tmp.path().join(&name)).unwrap();
        list.push_str(&format!("{name} {i}\n"));
    }
    std::fs::write(tmp.path().join("list.txt"), list).unwrap();
    let dir = tmp.path().display();
    let text = |batch: usize, shuffle: bool| {
        format!(
            r#"name: "d" type: "ImageData" top: "data" top: "label" phase: TRAIN
               image_data_param {{ source: "{dir}/list.txt" root_folder: "{dir}/" batch_size: {batch} is_color: false
                                   shuffle: {shuffle} rand_skip: {} }}"#,
            if shuffle { 5 } else { 0 }
        )
    };
    // A random skip starts the shuffled sequence mid-list, off the passes' bounds.
    assert_ranks_read_as_one(IMAGES, text, |shuffle| !shuffle);
}

/// HDF5Data splits its rows as Caffe's Skip does, across file boundaries:
/// two files of 5 and 6 rows whose labels are their offsets; with and without
/// shuffle (files and rows, with the seed the ranks share), at every step the
/// ranks read what one reader at the whole batch reads.
#[test]
fn hdf5_data_ranks_split_the_rows() {
    use caffe_tch::data::hdf5;
    let tmp = tempfile::tempdir().unwrap();
    let mut list = String::new();
    let mut next = 0.0f32;
    for (i, rows) in [5usize, 6].into_iter().enumerate() {
        let path = tmp.path().join(format!("part{i}.h5"));
        let values: Vec<f32> = (0..rows).map(|k| next + k as f32).collect();
        next += rows as f32;
        let f = hdf5::create(&path).unwrap();
        hdf5::write_f32(&f, "data", &[rows as i64, 1], &values).unwrap();
        hdf5::write_f32(&f, "label", &[rows as i64], &values).unwrap();
        drop(f);
        list.push_str(&format!("{}\n", path.display()));
    }
    std::fs::write(tmp.path().join("list.txt"), list).unwrap();
    let dir = tmp.path().display();
    let text = |batch: usize, shuffle: bool| {
        format!(
            r#"name: "d" type: "HDF5Data" top: "data" top: "label" phase: TRAIN
               hdf5_data_param {{ source: "{dir}/list.txt" batch_size: {batch} shuffle: {shuffle} }}"#
        )
    };
    assert_ranks_read_as_one(11, text, |_| true);
}

/// kill -9 of rank 1 mid-run: rank 0 fails, within the timeout, naming rank 1.
#[test]
fn a_killed_rank_stops_rank_0_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let solver = lenet_solver(tmp.path(), 16, "max_iter: 100000\ndisplay: 5");
    let mut ranks = Ranks(start_ranks(&solver, 2, &["-dist_timeout", "5"]));
    let rx = lines(ranks.0[0].stderr.take().unwrap());
    let mut log = Vec::new();
    assert!(wait_for(&rx, "Iteration 10 (", &mut log), "training did not start: {log:?}");
    ranks.0[1].kill().unwrap();
    let killed = Instant::now();
    let status = wait_exit(&mut ranks.0[0], Duration::from_secs(20));
    let waited = killed.elapsed();
    log.extend(rx.try_iter());
    let text = log.join("\n");
    eprintln!("rank 0 exited {:.2} s after rank 1 was killed", waited.as_secs_f64());
    assert!(!status.success(), "{text}");
    let error = text.lines().find(|l| l.starts_with("caffe: error:")).unwrap_or_else(|| panic!("{text}"));
    assert!(error.contains("rank 1") && error.contains("is gone"), "{error}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");
}

/// `caffe train -ranks 2` starts both ranks itself; a SIGINT to it reaches
/// both, which stop at the same iteration, and rank 0 leaves one snapshot.
#[test]
fn sigint_on_the_launcher_stops_every_rank_with_one_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let solver = lenet_solver(tmp.path(), 16, "max_iter: 100000\ndisplay: 5");
    let mut launcher = Ranks(vec![caffe()
        .args(["train", "-solver", solver.to_str().unwrap(), "-ranks", "2", "-dist_timeout", "20"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()]);
    let rx = lines(launcher.0[0].stderr.take().unwrap());
    let mut log = Vec::new();
    assert!(wait_for(&rx, "Iteration 10 (", &mut log), "training did not start: {log:?}");
    let pid = launcher.0[0].id().to_string();
    assert!(Command::new("kill").args(["-s", "INT", &pid]).status().unwrap().success());
    let status = wait_exit(&mut launcher.0[0], Duration::from_secs(30));
    log.extend(rx.try_iter());
    let text = log.join("\n");
    assert!(status.success(), "{status:?}\n{text}");
    assert!(text.contains("Starting 2 ranks") && text.contains("Optimization stopped early."), "{text}");
    let states: Vec<String> = std::fs::read_dir(tmp.path().join("out"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".solverstate"))
        .collect();
    assert_eq!(states.len(), 1, "{states:?}\n{text}");
}

/// Ranks given different solvers (one clips gradients) stop at the start, rank 0 naming the other.
#[test]
fn mismatched_solvers_are_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    let sa = lenet_solver(&a, 16, "max_iter: 2");
    let sb = lenet_solver(&b, 16, "max_iter: 2\nclip_gradients: 10");
    let mut ranks = Ranks(start_ranks_with(&[&sa, &sb], &["-dist_timeout", "10"]));
    let mut errors = Vec::new();
    for c in &mut ranks.0 {
        let mut s = String::new();
        std::io::Read::read_to_string(c.stderr.as_mut().unwrap(), &mut s).unwrap();
        assert!(!c.wait().unwrap().success(), "{s}");
        errors.push(s.lines().find(|l| l.starts_with("caffe: error:")).unwrap_or_else(|| panic!("{s}")).to_string());
    }
    assert!(
        errors[0].contains("the solver differs across the ranks") && errors[0].contains("rank 1 has"),
        "{}",
        errors[0]
    );
    assert!(errors[1].contains("rank 0 has"), "{}", errors[1]);
}

/// NCCL, for CUDA tensors, through its own shim library (opened on demand).
/// On a machine without GPUs, c10d's refusal to make an NCCL group comes back
/// as our one-line error; with a GPU, a group of one on cuda:0 forms and its
/// all-reduce sums over that one rank.
#[test]
fn nccl_group_needs_a_gpu() {
    use caffe_tch::dist::{launch::free_port, Dist, LaunchEnv};
    if !caffe_tch::dist::nccl::built() {
        skip!("NCCL support was not built (build.rs found no CUDA headers: make cuda-headers)");
    }
    let env = LaunchEnv {
        rank: 0,
        world: 1,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: free_port().unwrap(),
    };
    let joined = Dist::join(&env, Duration::from_secs(20), tch::Device::Cuda(0));
    if caffe_tch::util::cuda::is_available() {
        let dist = joined.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(dist.backend(), "NCCL");
        let mut t = [tch::Tensor::from_slice(&[1.5f32, -2.0]).to_device(tch::Device::Cuda(0))];
        dist.all_reduce_mean(&mut t, "a test all-reduce").unwrap();
        assert_eq!(Vec::<f32>::try_from(t[0].to_device(tch::Device::Cpu)).unwrap(), vec![1.5, -2.0]);
        return;
    }
    let err = joined.err().expect("an NCCL group without a GPU").to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains("over NCCL could not be formed") && err.contains("no GPUs found"), "{err}");
}

/// Several GPUs on a machine without any: `-gpu 0,1` (the launcher) and a
/// CUDA request under a launcher's environment are one-line errors, exit 1,
/// before any rank starts or any group forms.
#[test]
fn several_gpus_without_a_gpu_is_a_clear_error() {
    if caffe_tch::util::cuda::is_available() {
        crate::common::note("a GPU is present: the no-GPU errors are not checked here");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let solver = lenet_solver(tmp.path(), 16, "max_iter: 2");
    let solver = solver.to_str().unwrap();
    let port = caffe_tch::dist::launch::free_port().unwrap().to_string();
    for (flag, env) in [("0,1", None), ("all", None), ("0", Some(&port))] {
        let mut cmd = caffe();
        cmd.args(["train", "-solver", solver, "-gpu", flag]);
        if let Some(port) = env {
            cmd.env("WORLD_SIZE", "2").env("RANK", "0").env("MASTER_ADDR", "127.0.0.1").env("MASTER_PORT", port);
        }
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "-gpu {flag}: {err}");
        let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("caffe: error:")).collect();
        assert_eq!(lines.len(), 1, "-gpu {flag}: {err}");
        let expected = if flag.contains(',') && !caffe_tch::dist::nccl::built() {
            "NCCL support was not built"
        } else {
            "no CUDA device is available"
        };
        assert!(lines[0].contains(&format!("-gpu {flag}:")) && lines[0].contains(expected), "{}", lines[0]);
        assert!(!err.contains("Starting 2 ranks") && !err.contains("joining the group"), "{err}");
    }
}

#[test]
fn launch_environment_is_checked() {
    let env = |pairs: &'static [(&'static str, &'static str)]| {
        LaunchEnv::from_lookup(move |k| pairs.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    };
    assert_eq!(env(&[]).unwrap(), None);
    let e = env(&[("RANK", "1"), ("WORLD_SIZE", "2"), ("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29501")])
        .unwrap()
        .unwrap();
    assert_eq!((e.rank, e.world, e.local_rank, e.master_addr.as_str(), e.master_port), (1, 2, 1, "10.0.0.1", 29501));
    for (pairs, needle) in [
        (&[("RANK", "2"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "1")][..], "RANK=2 is not below WORLD_SIZE=2"),
        (&[("RANK", "0"), ("WORLD_SIZE", "2")][..], "MASTER_PORT is not set"),
        (&[("RANK", "0"), ("WORLD_SIZE", "two"), ("MASTER_PORT", "1")][..], "WORLD_SIZE=\"two\""),
        (&[("RANK", "0"), ("WORLD_SIZE", "2"), ("MASTER_PORT", "70000")][..], "MASTER_PORT=\"70000\""),
        (&[("RANK", "0")][..], "WORLD_SIZE is not"),
    ] {
        let err = env(pairs).unwrap_err().to_string();
        assert!(err.contains(needle), "{err}");
    }
}

/// Lines from a child's stderr, as they come.
fn lines(stderr: std::process::ChildStderr) -> std::sync::mpsc::Receiver<String> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(|l| l.ok()) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits (up to 60 s) for a line containing `needle`, keeping what was read.
fn wait_for(rx: &std::sync::mpsc::Receiver<String>, needle: &str, log: &mut Vec<String>) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                let hit = line.contains(needle);
                log.push(line);
                if hit {
                    return true;
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(_) => return false,
        }
    }
    false
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "caffe did not exit within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
