"""MultiBoxLoss (the SSD fork's training loss) against a numpy model of the
fork's CPU code, written here from its rules: ground-truth rows (padding,
difficult boxes), prior matching (bipartite, then per prediction), hard
negative / hard example mining (with and without NMS), the encoded location
targets (variance in the code or in the target, bp_inside), the SmoothL1 / L2
and Softmax / Logistic terms and the normalizations. For each setting the
loss top and the diffs caffe-tch leaves on the loc and conf inputs must
match the fork's backward: the inner loss layers' diffs for the selected
rows copied back into place (zero elsewhere), scaled by 1 / normalizer.

Data are random (no exact ties, which the fork's sort leaves to chance):
3 images, jittered grid priors, one image without boxes (the fork mines no
negatives there), a padding row and a difficult box."""
import numpy as np
import pytest

import caffe

DEFAULTS = dict(num_classes=21, background_label_id=0, match_type="PER_PREDICTION", overlap_threshold=0.5,
                use_difficult_gt=True, mining_type="MAX_NEGATIVE", neg_pos_ratio=3.0, neg_overlap=0.5,
                sample_size=64, encode_variance_in_target=False, ignore_cross_boundary_bbox=False,
                bp_inside=False, loc_loss_type="SMOOTH_L1", conf_loss_type="SOFTMAX", loc_weight=1.0,
                normalization="VALID", nms_param=None, use_prior_for_nms=False)


# ----- the numpy model of the fork -----

def area(b):
    return (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])


def iou(a, b):
    """Jaccard overlap of every box of a (A×4) with every box of b (B×4), in
    f32 as the fork computes it; 0 where they do not overlap."""
    a, b = a.astype(np.float32)[:, None], b.astype(np.float32)[None]
    w = np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0])
    h = np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1])
    inter = w * h
    with np.errstate(invalid="ignore", divide="ignore"):
        out = inter / (area(a) + area(b) - inter)
    return np.where((w > 0) & (h > 0), out, np.float32(0))


def truth_boxes(gt, num, q):
    """Per image, its (label, box) list in row order."""
    out = [[] for _ in range(num)]
    for row in gt.reshape(-1, 8):
        if int(row[0]) == -1 or (row[7] and not q["use_difficult_gt"]):
            continue
        out[int(row[0])].append((int(row[1]), row[3:7]))
    return out


def match(ov, q, ignored):
    """Prior → ground-truth index (-1 none, -2 ignored) and overlap. Greedy
    bipartite rounds take the best remaining (prior, box) pair, the lower
    prior and then box winning ties; PER_PREDICTION then gives each prior
    left its best box if that overlap reaches overlap_threshold."""
    ov = np.where(ov > 1e-6, ov, 0).astype(np.float32)
    ov[ignored] = 0
    idx = np.where(ignored, -2, -1)
    best = ov.max(1)
    free = ov.copy()
    for _ in range(ov.shape[1]):
        k = int(np.argmax(free))
        i, j = divmod(k, ov.shape[1])
        if free[i, j] <= 0:
            break
        idx[i], best[i] = j, ov[i, j]
        free[i, :], free[:, j] = 0, 0
    if q["match_type"] == "PER_PREDICTION":
        for i in np.flatnonzero(idx == -1):
            if best[i] > 0 and best[i] >= q["overlap_threshold"]:
                idx[i] = int(np.argmax(ov[i]))
    return idx, best


def encode(prior, var, box):
    """CENTER_SIZE code of box against prior, divided by the variances (the
    fork divides here, or later both code and prediction when the variance
    is 'in the target': the same target either way)."""
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    bw, bh = box[2] - box[0], box[3] - box[1]
    raw = [((box[0] + box[2]) - (prior[0] + prior[2])) / 2 / pw, ((box[1] + box[3]) - (prior[1] + prior[3])) / 2 / ph,
           np.log(bw / pw), np.log(bh / ph)]
    return np.array(raw) / var


def decode(prior, var, code):
    pw, ph = prior[2] - prior[0], prior[3] - prior[1]
    cx, cy = prior[0] + pw / 2 + var[0] * code[0] * pw, prior[1] + ph / 2 + var[1] * code[1] * ph
    w, h = np.exp(var[2] * code[2]) * pw, np.exp(var[3] * code[3]) * ph
    return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])


def nms(boxes, scores, threshold, top_k):
    """Indices kept: best score first, at most top_k, tiny boxes dropped,
    and each box overlapping a kept one by more than threshold."""
    top_k = top_k if top_k > -1 else len(scores)
    order = list(np.argsort(-scores, kind="stable"))[:top_k]
    kept = []
    while order:
        b = order.pop(0)
        if area(boxes[b]) < 1e-5:
            continue
        kept.append(b)
        if len(kept) >= top_k:
            break
        ov = iou(boxes[b:b + 1], boxes[order])[0] if order else []
        order = [o for o, v in zip(order, ov) if area(boxes[o]) >= 1e-5 and v <= threshold]
    return kept


def point_loss(d, q):
    if q["loc_loss_type"] == "L2":
        return 0.5 * d * d, d
    return np.where(np.abs(d) < 1, 0.5 * d * d, np.abs(d) - 0.5), np.clip(d, -1, 1)


def conf_terms(x, t, q):
    """Per-row loss and the gradient of rows x against target rows t."""
    if q["conf_loss_type"] == "SOFTMAX":
        lse = np.log(np.exp(x - x.max(1, keepdims=True)).sum(1, keepdims=True)) + x.max(1, keepdims=True)
        return lse[:, 0] - (x * t).sum(1), np.exp(x - lse) - t
    bce = np.maximum(x, 0) - x * t + np.log1p(np.exp(-np.abs(x)))
    return bce.sum(1), 1 / (1 + np.exp(-x)) - t


def reference(loc, conf, prior, gt, q):
    """The fork's loss and (loc, conf) diffs, plus counts for sanity checks."""
    n, c, bg = loc.shape[0], q["num_classes"], q["background_label_id"]
    nprior = prior.shape[2] // 4
    priors, var = prior[0, 0].reshape(nprior, 4), prior[0, 1].reshape(nprior, 4).astype(np.float64)
    loc = loc.reshape(n, nprior, 4).astype(np.float64)
    conf = conf.reshape(n, nprior, c).astype(np.float64)
    evit, mining = q["encode_variance_in_target"], q["mining_type"]
    outside = ((priors < 0) | (priors > 1)).astype(bool)
    stats = dict(frozen=0, ignored=0, dropped=0)
    pos, rows = [], []  # pos: (image, prior, pred, target); rows: (image, prior, label)
    labels_all = np.full((n, nprior), bg)
    for i, truths in enumerate(truth_boxes(gt, n, q)):
        if not truths:
            continue  # all background; no negatives are mined here
        labels = np.array([l for l, _ in truths])
        ignored = outside.any(1) & q["ignore_cross_boundary_bbox"]
        idx, best = match(iou(priors, np.array([b for _, b in truths])), q, ignored)
        stats["ignored"] += int((idx == -2).sum())
        pairs = {}
        for p in np.flatnonzero(idx >= 0):
            target = encode(priors[p].astype(np.float64), var[p], truths[idx[p]][1].astype(np.float64))
            pred = loc[i, p] / var[p] if evit else loc[i, p].copy()
            if q["bp_inside"]:  # corners of the prior off the image: no gradient
                pred = np.where(outside[p], target, pred)
            pairs[p] = (pred, target)
        label = np.where(idx >= 0, labels[np.maximum(idx, 0)], bg)
        negatives = []
        if mining != "NONE":
            score = conf_terms(conf[i], np.eye(c)[label], q)[0]
            if mining == "HARD_EXAMPLE":
                for p, (pred, target) in pairs.items():
                    score[p] += point_loss(pred - target, q)[0].sum()
                cand = np.arange(nprior)
                want = min(q["sample_size"], nprior)
            else:
                cand = np.flatnonzero((idx == -1) & (best < q["neg_overlap"]))
                want = min(int(np.float32((idx >= 0).sum()) * np.float32(q["neg_pos_ratio"])), len(cand))
            if q["nms_param"] and q["nms_param"][0] > 0:
                boxes = priors if q["use_prior_for_nms"] else np.array(
                    [decode(priors[p], np.ones(4) if evit else var[p], loc[i, p]) for p in range(nprior)])
                kept = nms(boxes[cand], score[cand], *q["nms_param"])
                chosen = set(cand[kept[:want]])
            else:
                chosen = set(cand[np.argsort(-score[cand], kind="stable")[:want]])
            if mining == "HARD_EXAMPLE":
                for p in [p for p in pairs if p not in chosen]:
                    del pairs[p]
                    stats["dropped"] += 1
            negatives = sorted(p for p in chosen if idx[p] == -1)
        for p, (pred, target) in sorted(pairs.items()):
            pos.append((i, p, pred, target))
            rows.append((i, p, label[p]))
            labels_all[i, p] = label[p]
        rows += [(i, p, bg) for p in negatives]
    stats["matches"], stats["negatives"] = len(pos), len(rows) - len(pos)
    norm = max(1.0, dict(VALID=len(pos), FULL=n * nprior, BATCH_SIZE=n, NONE=1)[q["normalization"]])

    dloc, dconf = np.zeros_like(loc), np.zeros_like(conf)
    loc_sum = 0.0
    for i, p, pred, target in pos:
        value, grad = point_loss(pred - target, q)
        loc_sum += value.sum()
        stats["frozen"] += int((pred == target).sum())
        # The fork copies the diff of the (maybe variance-scaled) prediction
        # back as is: no chain factor for the scaling.
        dloc[i, p] = grad * q["loc_weight"] / norm
    if mining == "NONE":
        x = conf.reshape(-1, c)
        # LOGISTIC too: one-hot targets, the background's for unmatched
        # priors. Here caffe-tch departs from the fork, which fills these
        # targets with the background id (no 1 anywhere for id 0) and writes
        # the positives of every image after the first at the wrong rows (its
        # per-image pointer steps by priors, not priors·classes).
        t = np.eye(c)[labels_all.reshape(-1)]
        conf_sum, g = conf_terms(x, t, q)
        conf_sum, dconf = conf_sum.sum(), g.reshape(conf.shape) / norm
    elif rows:
        ii, pp, ll = map(np.array, zip(*rows))
        conf_sum, g = conf_terms(conf[ii, pp], np.eye(c)[ll], q)
        conf_sum, dconf[ii, pp] = conf_sum.sum(), g / norm
    else:
        conf_sum = 0.0
    loss = q["loc_weight"] * loc_sum / norm + conf_sum / norm
    return loss, dloc.reshape(n, -1), dconf.reshape(n, -1), stats


# ----- data and the net -----

def make_priors(rng, grid, sizes, clip):
    """Jittered grid priors (1×2×P·4: boxes, then variances); unclipped ones
    may cross the image border."""
    boxes = []
    for y in range(grid):
        for x in range(grid):
            for s in sizes:
                cx, cy = (np.array([x, y]) + 0.5 + rng.uniform(-0.15, 0.15, 2)) / grid
                w, h = s * rng.uniform(0.75, 1.3, 2)
                boxes.append([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])
    boxes = np.array(boxes)
    if clip:
        boxes = boxes.clip(0, 1)
    var = np.tile([0.1, 0.1, 0.2, 0.2], (len(boxes), 1))
    return np.stack([boxes.reshape(-1), var.reshape(-1)])[None].astype(np.float32)


def make_truth(rng, classes, counts=(3, 0, 4)):
    """Rows [image, label, instance, xmin, ymin, xmax, ymax, difficult]: the
    last box is difficult, a padding row sits among them."""
    rows = []
    for image, count in enumerate(counts):
        for k in range(count):
            cx, cy = rng.uniform(0.2, 0.8, 2)
            w, h = rng.uniform(0.12, 0.55, 2)
            box = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, 1)
            rows.append([image, rng.integers(1, classes), k, *box, 0])
    rows[-1][7] = 1
    rows.insert(2, [-1] * 8)
    return np.array(rows, np.float32)[None, None]


def prototxt(n, priors, classes, rows, params):
    fields = []
    for key, v in {"num_classes": classes, "code_type": "CENTER_SIZE", **params}.items():
        if key == "normalization":
            continue
        if key == "nms_param":
            fields.append("nms_param { nms_threshold: %r top_k: %d }" % v)
        else:
            fields.append("%s: %s" % (key, str(v).lower() if isinstance(v, bool) else v))
    norm = "loss_param { normalization: %s }" % params["normalization"] if "normalization" in params else ""
    inputs = dict(loc=[n, priors * 4], conf=[n, priors * classes], prior=[1, 2, priors * 4], gt=[1, 1, rows, 8])
    # force_backward: as in Caffe, Input tops get no diff otherwise.
    text = "force_backward: true\n" + "".join('layer { name: "%s" type: "Input" top: "%s" input_param { shape { %s } } }\n'
                   % (k, k, " ".join("dim: %d" % d for d in dims)) for k, dims in inputs.items())
    return text + """layer { name: "mbox_loss" type: "MultiBoxLoss" bottom: "loc" bottom: "conf" bottom: "prior"
  bottom: "gt" top: "loss" loss_weight: 1
  propagate_down: true propagate_down: true propagate_down: false propagate_down: false
  multibox_loss_param { %s } %s }
""" % (" ".join(fields), norm)


# name: (layer params, classes, grid, prior sizes, clipped priors, seed, what the data must exercise)
CASES = {
    "defaults": (dict(), 21, 5, (0.2, 0.35, 0.5), True, 1, "negatives"),
    "bipartite": (dict(match_type="BIPARTITE"), 21, 5, (0.2, 0.35, 0.5), True, 2, "negatives"),
    "hard_example": (dict(mining_type="HARD_EXAMPLE", sample_size=14), 21, 5, (0.2, 0.35, 0.5), True, 3,
                     "dropped"),
    "hard_example_nms": (dict(mining_type="HARD_EXAMPLE", sample_size=20, nms_param=(0.45, 40)), 5, 5,
                         (0.2, 0.35, 0.5), True, 4, "dropped"),
    "none_softmax_l2": (dict(mining_type="NONE", loc_loss_type="L2"), 5, 4, (0.25, 0.45, 0.6), True, 5, None),
    "none_logistic_l2": (dict(mining_type="NONE", conf_loss_type="LOGISTIC", loc_loss_type="L2"), 5, 4,
                         (0.25, 0.45, 0.6), True, 6, None),
    "max_negative_logistic": (dict(conf_loss_type="LOGISTIC", loc_weight=2.5), 5, 4, (0.25, 0.45, 0.6), True, 7,
                              "negatives"),
    "no_difficult_thresholds": (dict(use_difficult_gt=False, neg_overlap=0.3, overlap_threshold=0.35), 21, 5,
                                (0.2, 0.35, 0.5), True, 8, "negatives"),
    "full": (dict(normalization="FULL"), 21, 6, (0.2, 0.4), True, 9, "negatives"),
    "batch_size": (dict(normalization="BATCH_SIZE", loc_weight=0.5), 21, 6, (0.2, 0.4), True, 10, "negatives"),
    "variance_in_target_bp_inside": (dict(encode_variance_in_target=True, bp_inside=True), 21, 4,
                                     (0.3, 0.5, 0.7), False, 11, "frozen"),
    "bp_inside": (dict(bp_inside=True), 21, 4, (0.3, 0.5, 0.7), False, 13, "frozen"),
    "ignore_cross_boundary": (dict(ignore_cross_boundary_bbox=True), 21, 4, (0.3, 0.5, 0.7), False, 12, "ignored"),
    # Ignored priors still take hard-example slots (they are never negatives).
    "ignore_cross_boundary_hard_example": (dict(ignore_cross_boundary_bbox=True, mining_type="HARD_EXAMPLE",
                                                sample_size=24), 21, 4, (0.3, 0.5, 0.7), False, 14, "ignored"),
}


@pytest.mark.parametrize("name", list(CASES))
def test_multibox_loss_matches_the_fork(tmp_path, name):
    params, classes, grid, sizes, clip, seed, exercised = CASES[name]
    rng = np.random.default_rng(seed)
    prior = make_priors(rng, grid, sizes, clip)
    gt = make_truth(rng, classes)
    n, priors = 3, prior.shape[2] // 4
    loc = (rng.standard_normal((n, priors * 4)) * 0.8).astype(np.float32)
    conf = (rng.standard_normal((n, priors * classes)) * 2).astype(np.float32)
    q = {**DEFAULTS, "num_classes": classes, **params}
    loss, dloc, dconf, stats = reference(loc, conf, prior, gt, q)
    assert stats["matches"] > 0 and (exercised is None or stats[exercised] > 0), stats

    path = tmp_path / "net.prototxt"
    path.write_text(prototxt(n, priors, classes, gt.shape[2], params))
    net = caffe.Net(str(path), caffe.TRAIN)
    for key, value in dict(loc=loc, conf=conf, prior=prior, gt=gt).items():
        net.blobs[key].data[...] = value
    got = float(net.forward()["loss"])
    net.backward()
    checks = dict(loss=(got, loss, dict(rtol=1e-5)),
                  conf=(net.blobs["conf"].diff, dconf, dict(rtol=0, atol=1e-6)),
                  loc=(net.blobs["loc"].diff, dloc, dict(rtol=0, atol=1e-6)))
    for what, (actual, desired, tol) in checks.items():
        np.testing.assert_allclose(actual, desired, err_msg=what, **tol)
