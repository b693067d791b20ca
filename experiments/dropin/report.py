#!/usr/bin/env python3
"""RESULTS.md and the figures of the DropIn reproduction, from the logs alone.

    python3 experiments/dropin/report.py                  # docs/results/logs -> docs/results
    python3 experiments/dropin/report.py --results DIR    # DIR/logs -> DIR
    python3 experiments/dropin/report.py --grid required  # print a grid's configs (run.sh asks)

Reads every `<config>[_it<N>][_gpu]_seed<k>.log` in DIR/logs (the full glog of
one `caffe train`, written by run.sh), parses the test passes from the log
lines, and writes DIR/RESULTS.md (one table per grid) and DIR/*.png (drawn by
`caffe plot`, so the binary must be built; `--no-figures` skips them). BVLC
Caffe's own LeNet(10) runs are DIR/logs/caffe_*.log. Standard library only.
"""
import argparse
import datetime
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The grids. A config is a solver name without `_solver` (solvers/<config>_solver.prototxt).
GRIDS = {
    # Table 1's claim on the CPU: LeNet(10) does or does not train without DropIn,
    # depending on the filler of its added convs; with DropIn it trains with both.
    "required": [
        "lenet10_plain", "lenet10_dropin_d2500", "lenet10_dropin_d7500",
        "lenet10_gauss", "lenet10_dropin_gauss_d2500", "lenet10_dropin_gauss_d7500",
    ],
    # The rest of Table 1: LeNet, N = 5 at d = 5,000, N = 15 and 25 at every d,
    # and the plain N = 15 and 25 nets (both fillers) as their controls.
    "full": [
        "lenet", "lenet10_dropin_d5000", "lenet10_dropin_gauss_d5000",
        "lenet30_plain", "lenet30_gauss",
        "lenet30_dropin_d2500", "lenet30_dropin_d5000", "lenet30_dropin_d7500",
        "lenet50_plain", "lenet50_gauss",
        "lenet50_dropin_d2500", "lenet50_dropin_d5000", "lenet50_dropin_d7500",
    ],
    # Table 7's cases on LeNet's fc layers.
    "regularization": ["lenet_reg_case1", "lenet_reg_case2", "lenet_reg_case3"],
}
GRID_TEXT = {
    "required": "LeNet(10) without and with DropIn (d = 2,500 and 7,500), for both fillers of the added convs "
                "(paper: Table 1, Figures 2 and 3).",
    "full": "The rest of Table 1: Caffe's LeNet, LeNet(10) at d = 5,000, LeNet(30) and LeNet(50) with DropIn at "
            "every d, and plain LeNet(30) and LeNet(50) (xavier and gaussian 0.01 added convs) as their controls.",
    "regularization": "Table 7's three cases moved onto LeNet's fc layers (models/lenet_reg_case*): after ip1 "
                      "(+ dropout) an added ip1b followed by dropout (case 1), nothing (case 2), or a "
                      "regularizing DropIn with ip1, ratio 0.5 (case 3) (paper: Table 7, Figure 7).",
    "other": "Configs outside the grids.",
}
# BVLC Caffe's own runs (copied from caffe-ref/lenet10_runs by run.sh) and the config each matches.
CAFFE_REF = {"caffe_lenet10_plain": "lenet10_plain", "caffe_lenet10_gauss": "lenet10_gauss"}

RUN_RE = re.compile(r"^(?P<config>.+?)(?:_it(?P<iters>\d+))?(?P<gpu>_gpu)?_seed(?P<seed>\d+)$")
PREFIX_RE = re.compile(r"^[IWEF](?:(?P<year>\d{4}))?(?P<month>\d\d)(?P<day>\d\d) (?P<time>\d\d:\d\d:\d\d\.\d+)")
TESTING_RE = re.compile(r"Iteration (\d+), Testing net \(#0\)")
OUTPUT_RE = re.compile(r"Test net output #\d+: (\S+) = (\S+)")
DIVERGED_RE = re.compile(r"Iteration (\d+): the loss is \S+ \(not finite\); training stopped")
MAX_ITER_RE = re.compile(r"(?:^|\] )\s*max_iter: (\d+)")


def grid_of(config):
    for g, configs in GRIDS.items():
        if config in configs:
            return g
    return "other"


def describe(config):
    """(net, filler of the added layers, d) for a config name."""
    m = re.match(r"^lenet(\d+)?_?(.*)$", config)
    if not m:
        return config, "—", "—"
    depth, rest = m.group(1), m.group(2)
    if config.startswith("lenet_reg_case"):
        return "LeNet + ip1b, case %s" % config[-1], "xavier", "—"
    if depth is None:
        return "LeNet", "—", "—"
    net = "LeNet(%s)" % depth + (" + DropIn" if "dropin" in rest else "")
    filler = "gaussian 0.01" if "gauss" in rest else "xavier"
    d = re.search(r"_d(\d+)$", rest)
    return net, filler, "{:,}".format(int(d.group(1))) if d else "—"


def timestamp(m, year_hint):
    year = int(m.group("year") or year_hint)
    h, mi, s = m.group("time").split(":")
    sec = float(s)
    return datetime.datetime(year, int(m.group("month")), int(m.group("day")), int(h), int(mi), int(sec),
                             int(round((sec - int(sec)) * 1e6)) % 1000000)


class Log:
    """One training log: its test passes [(iteration, accuracy)] and timing."""

    def __init__(self, path):
        self.path = path
        self.tests = []
        self.max_iter = None
        self.done = False
        self.stopped_early = False
        self.diverged_at = None  # the iteration whose loss was not finite: the run's outcome, not a crash
        first = last = None
        self.segments = 0  # `caffe train` processes in the log: > 1 when run.sh resumed it
        wall = 0.0
        test_start = None
        self.test_seconds = 0.0
        pending = None  # iteration of the test pass being read
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                pm = PREFIX_RE.match(line)
                t = timestamp(pm, 2000) if pm else None
                if t is not None:
                    if "Initializing solver from parameters" in line:
                        # A new process (a resume): the time between processes is not the run's.
                        if first is not None and last is not None:
                            wall += (last - first).total_seconds() % (365 * 86400)
                        first = None
                        self.segments += 1
                    if first is None:
                        first = t
                    last = t
                if self.max_iter is None:
                    mm = MAX_ITER_RE.search(line)
                    if mm:
                        self.max_iter = int(mm.group(1))
                tm = TESTING_RE.search(line)
                if tm:
                    pending = int(tm.group(1))
                    test_start = t
                    continue
                om = OUTPUT_RE.search(line)
                if om and pending is not None and om.group(1) == "accuracy":
                    try:
                        acc = float(om.group(2))
                    except ValueError:
                        acc = float("nan")
                    self.tests.append((pending, acc))
                    pending = None
                    if test_start is not None and t is not None:
                        self.test_seconds += max(0.0, (t - test_start).total_seconds())
                if "Optimization stopped early." in line:
                    self.stopped_early = True
                if line.rstrip().endswith("Optimization Done."):
                    self.done = True
                dm = DIVERGED_RE.search(line)
                if dm:
                    self.diverged_at = int(dm.group(1))
        if first and last:
            wall += (last - first).total_seconds() % (365 * 86400)  # modulo: a log across New Year
        self.wall_seconds = wall if first or wall else None

    @property
    def complete(self):
        """Ran to max_iter, or diverged (the solver stops at a non-finite loss)."""
        return (self.done and not self.stopped_early) or self.diverged_at is not None

    def final(self):
        return self.tests[-1][1] if self.tests else float("nan")

    def best(self):
        return max((a for _, a in self.tests if not math.isnan(a)), default=float("nan"))

    def first_above(self, level=0.5):
        for it, a in self.tests:
            if a > level:
                return it
        return None

    def ms_per_iter(self):
        """Training time per iteration: wall time less the test passes."""
        iterations = self.diverged_at or self.max_iter
        if self.wall_seconds is None or not iterations:
            return None
        return 1000.0 * (self.wall_seconds - self.test_seconds) / iterations


def read_meta(path):
    meta = {}
    if os.path.exists(path):
        with open(path, encoding="utf-8") as f:
            for line in f:
                if "=" in line:
                    k, v = line.rstrip("\n").split("=", 1)
                    meta[k] = v
    return meta


class Group:
    """The runs of one config at one iteration count on one kind of device."""

    def __init__(self, config, iters, gpu):
        self.config, self.iters, self.gpu = config, iters, gpu
        self.runs = []  # (seed, Log, meta)

    @property
    def key(self):
        return self.config + ("_it%d" % self.iters if self.iters else "") + ("_gpu" if self.gpu else "")


def collect(logs_dir):
    groups = {}
    partial = []
    if not os.path.isdir(logs_dir):
        return [], partial
    for name in sorted(os.listdir(logs_dir)):
        if name.endswith(".log.partial"):
            partial.append(name[:-len(".log.partial")])
            continue
        if not name.endswith(".log"):
            continue
        m = RUN_RE.match(name[:-4])
        if not m:
            continue
        log = Log(os.path.join(logs_dir, name))
        if not log.complete:
            partial.append(name[:-4])
            continue
        key = (m.group("config"), int(m.group("iters") or 0), bool(m.group("gpu")))
        g = groups.setdefault(key, Group(*key))
        g.runs.append((int(m.group("seed")), log, read_meta(os.path.join(logs_dir, name[:-4] + ".meta"))))
    order = {c: i for i, c in enumerate(c for cs in GRIDS.values() for c in cs)}
    ordered = sorted(groups.values(), key=lambda g: (g.iters, g.gpu, order.get(g.config, len(order)), g.config))
    for g in ordered:
        g.runs.sort(key=lambda r: r[0])
    return ordered, partial


def mean_sd(values):
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return "—"
    if len(values) == 1:
        return "%.4f" % values[0]
    return "%.4f ± %.4f" % (statistics.mean(values), statistics.stdev(values))


def final_cell(g):
    """Mean ± sd of the final test accuracy of the runs that finished; a
    diverged run is named with the iteration where its loss stopped being finite."""
    finals = [log.final() for _, log, _ in g.runs if log.diverged_at is None]
    diverged = ["seed %d diverged at iteration %s" % (seed, "{:,}".format(log.diverged_at))
                for seed, log, _ in g.runs if log.diverged_at is not None]
    parts = ([mean_sd(finals)] if finals else []) + diverged
    return "; ".join(parts)


def iterations_cell(g, logs):
    n = g.iters or (logs[0].max_iter if logs else None)
    text = "{:,}".format(n) if n else "?"
    if g.iters:
        text += " (reduced)"
    return text


def device_of(meta, gpu_run):
    """The device column: CPU, or GPU with the GPU's name when run.sh recorded it."""
    device = meta.get("device", "GPU" if gpu_run else "CPU")
    name = meta.get("gpu", "")
    return "%s (%s)" % (device, name) if device == "GPU" and name else device


def row(g):
    logs = [log for _, log, _ in g.runs]
    net, filler, d = describe(g.config)
    firsts = [log.first_above() for log in logs]
    first_text = ", ".join("{:,}".format(f) if f is not None else "never" for f in firsts)
    ms = [log.ms_per_iter() for log in logs if log.ms_per_iter() is not None]
    devices = sorted({device_of(meta, g.gpu) for _, _, meta in g.runs})
    return "| `%s` | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |" % (
        g.config, net, filler, d, iterations_cell(g, logs), ", ".join(str(s) for s, _, _ in g.runs),
        final_cell(g), mean_sd([log.best() for log in logs]), first_text,
        "%.0f" % statistics.mean(ms) if ms else "—", "/".join(devices))


HEADER = ("| config | net | filler (added layers) | d | iterations | seeds | final test accuracy | best test "
          "accuracy | first > 50% (per seed) | train ms/iter | device |\n|---|---|---|---|---|---|---|---|---|---|---|")


# Figures: (file stem, title, grid, configs, caffe reference logs).
FIGURES = [
    ("fig_lenet10_xavier", "LeNet(10), xavier added convs: plain vs DropIn", "required",
     ["lenet10_plain", "lenet10_dropin_d2500", "lenet10_dropin_d5000", "lenet10_dropin_d7500"],
     ["caffe_lenet10_plain"]),
    ("fig_lenet10_gauss", "LeNet(10), gaussian 0.01 added convs: plain vs DropIn", "required",
     ["lenet10_gauss", "lenet10_dropin_gauss_d2500", "lenet10_dropin_gauss_d5000", "lenet10_dropin_gauss_d7500"],
     ["caffe_lenet10_gauss"]),
    ("fig_lenet30_dropin", "LeNet(30): plain vs DropIn", "full",
     ["lenet", "lenet30_plain", "lenet30_gauss", "lenet30_dropin_d2500", "lenet30_dropin_d5000",
      "lenet30_dropin_d7500"], []),
    ("fig_lenet50_dropin", "LeNet(50): plain vs DropIn", "full",
     ["lenet", "lenet50_plain", "lenet50_gauss", "lenet50_dropin_d2500", "lenet50_dropin_d5000",
      "lenet50_dropin_d7500"], []),
    ("fig_regularization", "Regularization on LeNet's fc layers: Table 7's cases", "regularization",
     ["lenet_reg_case1", "lenet_reg_case2", "lenet_reg_case3"], []),
]


def legend(config, seed, log=None):
    net, filler, d = describe(config)
    if config.startswith("lenet_reg_case"):
        text = "case %s" % config[-1]
    elif "dropin" in config:
        text = "DropIn d=%s" % d.replace(",", "")
    elif config == "lenet":
        text = "LeNet"
    else:
        # Both plain controls (xavier, gaussian 0.01) share the deep nets' figures.
        text = "plain, %s" % filler
    text = "%s, seed %d" % (text, seed)
    if log is not None and log.diverged_at is not None:
        text += " (diverged at %s)" % "{:,}".format(log.diverged_at)
    return text


def caffe_binary():
    return os.environ.get("CAFFE") or os.path.join(ROOT, "target", "release", "caffe")


def draw(out_png, title, logs_with_labels):
    """Runs `caffe plot` on copies of the logs named by their legend labels."""
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (path, label) in enumerate(logs_with_labels):
            # `caffe plot` labels a curve by its file name; the index keeps names unique and in order.
            dst = os.path.join(tmp, "%s.log" % label)
            if os.path.exists(dst):
                dst = os.path.join(tmp, "%s (%d).log" % (label, i))
            shutil.copyfile(path, dst)
            paths.append(dst)
        cmd = [caffe_binary(), "plot"] + paths + ["-o", out_png, "-y", "test-accuracy", "-x", "iters",
                                                  "-title", title]
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True)
        if r.returncode != 0:
            raise SystemExit("caffe plot failed for %s:\n%s" % (out_png, r.stdout))


def figures(results, groups, logs_dir, enabled):
    """Writes the PNGs; returns {grid: [(png name, caption)]}."""
    out = {}
    variants = sorted({(g.iters, g.gpu) for g in groups})
    for iters, gpu in variants:
        suffix = ("_it%d" % iters if iters else "") + ("_gpu" if gpu else "")
        by_config = {g.config: g for g in groups if (g.iters, g.gpu) == (iters, gpu)}
        for stem, title, grid, configs, refs in FIGURES:
            curves = []
            for c in configs:
                g = by_config.get(c)
                if g:
                    curves += [(log.path, legend(c, seed, log)) for seed, log, _ in g.runs]
            # A baseline alone (plain LeNet beside no LeNet(30) runs) is no figure.
            if not any("dropin" in c and c in by_config for c in configs):
                continue
            # Caffe's reference ran 10,000 iterations: only next to full-length runs.
            if not iters:
                for ref in refs:
                    p = os.path.join(logs_dir, ref + ".log")
                    if os.path.exists(p):
                        curves.append((p, "BVLC Caffe, plain (no seed)"))
            full_title = title + (" (%d iterations, reduced)" % iters if iters else "") + (" (GPU)" if gpu else "")
            png = stem + suffix + ".png"
            if enabled:
                draw(os.path.join(results, png), full_title, curves)
            out.setdefault(grid, []).append((png, full_title))
    return out


def caffe_ref_rows(logs_dir):
    rows = []
    for ref, config in CAFFE_REF.items():
        p = os.path.join(logs_dir, ref + ".log")
        if not os.path.exists(p):
            continue
        log = Log(p)
        net, filler, d = describe(config)
        first = log.first_above()
        ms = log.ms_per_iter()
        rows.append("| `%s` (BVLC Caffe) | %s | %s | %s | %s | no `random_seed` | %.4f | %.4f | %s | %s | CPU |" % (
            config, net, filler, d, "{:,}".format(log.max_iter) if log.max_iter else "?", log.final(), log.best(),
            "{:,}".format(first) if first is not None else "never", "%.0f" % ms if ms else "—"))
    return rows


def datasets(groups):
    return sorted({meta.get("dataset", "") for g in groups for _, _, meta in g.runs} - {""})


def write_report(results, groups, partial, figs):
    logs_dir = os.path.join(results, "logs")
    lines = [
        "<!-- Generated by experiments/dropin/report.py from logs/: edit the script, not this file. -->",
        "# DropIn reproduction: results",
        "",
        "Smith, Hand & Doster, \"Gradual DropIn of Layers to Train Very Deep Neural Networks\" (CVPR 2016), "
        "reproduced with caffe-tch. The claim: a deep net that does not train from scratch trains when its "
        "added layers are dropped in gradually (DropIn, `dropin_length` d).",
        "",
        "Runs: `experiments/dropin/run.sh` (see experiments/dropin/README.md); this file and the figures: "
        "`python3 experiments/dropin/report.py`, from `logs/` alone. Hyper-parameters: Caffe's "
        "lenet_solver (lr 0.01, inv policy, momentum 0.9, weight decay 0.0005, batch 64, test every 500 "
        "iterations on all 10,000 test images).",
        "",
        "- Data: %s." % (", ".join(datasets(groups)) or "unknown (no .meta files)"),
        "- Columns: final = the last test pass (a run whose loss became NaN or infinite is stopped there by the "
        "solver and listed as diverged, with that iteration); best = the highest test pass of each run (mean ± sd over "
        "seeds; sd is the sample standard deviation); first > 50% = the first test pass whose accuracy "
        "exceeds 0.5, for each seed (tests run every `test_interval` iterations); train ms/iter = wall time "
        "less the test passes, over the iterations. It is the wall clock of runs that shared a 2-core machine "
        "(two runs at once, one thread each, often beside builds and tests), so it is no benchmark: "
        "the README's speed table is.",
        "- \"(reduced)\" marks runs shorter than the solver's max_iter (`run.sh --iters`; file names `_it<N>`); "
        "such runs are not the paper's protocol. GPU runs are marked in the device column (file names `_gpu`).",
        "",
    ]
    grids = ["required", "full", "regularization", "other"]
    for grid in grids:
        members = [g for g in groups if grid_of(g.config) == grid]
        refs = caffe_ref_rows(logs_dir) if grid == "required" else []
        if not members and not refs:
            continue
        lines += ["## %s" % {"required": "Required grid", "full": "Full grid", "regularization":
                             "Regularization grid", "other": "Other runs"}[grid], "", GRID_TEXT[grid], ""]
        if members:
            lines += [HEADER] + [row(g) for g in members] + [""]
        if refs:
            lines += ["BVLC Caffe's own runs of the two plain nets (caffe-ref `lenet10_runs/`, copied to "
                      "`logs/caffe_*.log`; same solver, no seed set):", "", HEADER] + refs + [""]
        for png, caption in figs.get(grid, []):
            lines += ["![%s](%s)" % (caption, png), ""]
        have = {g.config for g in members} | {m.group("config") for m in map(RUN_RE.match, partial) if m}
        missing = [c for c in GRIDS.get(grid, []) if c not in have]
        if missing:
            lines += ["No runs yet: %s (see the README's paper section)." % ", ".join("`%s`" % c for c in missing), ""]
    if not groups:
        lines += ["No finished runs yet.", ""]
    if partial:
        lines += ["Not finished (left out): %s." % ", ".join("`%s`" % p for p in partial), ""]
    with open(os.path.join(results, "RESULTS.md"), "w", encoding="utf-8") as f:
        f.write("\n".join(lines))


def main(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--results", default=os.path.join(ROOT, "docs", "results"),
                    help="results folder (logs in RESULTS/logs); default docs/results")
    ap.add_argument("--grid", choices=sorted(GRIDS), help="print the configs of a grid and exit")
    ap.add_argument("--no-figures", action="store_true", help="write RESULTS.md only")
    a = ap.parse_args(argv[1:])
    if a.grid:
        print(" ".join(GRIDS[a.grid]))
        return 0
    results = os.path.abspath(a.results)
    logs_dir = os.path.join(results, "logs")
    groups, partial = collect(logs_dir)
    figs = figures(results, groups, logs_dir, not a.no_figures)
    write_report(results, groups, partial, figs)
    print("wrote %s (%d configs, %d runs%s)" % (os.path.join(results, "RESULTS.md"), len(groups),
                                                sum(len(g.runs) for g in groups),
                                                ", %d unfinished" % len(partial) if partial else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
