//! The helpers of the detection layers' `model.py` code (PriorBox, ROI and
//! PS-ROI pooling, Proposal, DetectionOutput and the YOLO heads).
use super::Helper;

pub(super) const DETECTION: &[Helper] = &[
    Helper {
        name: "caffe_prior_box",
        deps: &[],
        code: r#"def caffe_prior_box(x, image, sizes, step, offset, clip, variance):
    """The SSD fork's PriorBox: for each position of x's H x W map (row-major), the boxes of `sizes`
    ((width, height) in pixels) centred at ((w + offset) * step_w, (h + offset) * step_h), as corner
    fractions of the image (a tensor, or its (height, width)), then each coordinate's variance:
    1 x 2 x (H * W * len(sizes) * 4). Centres in float32 and corners in float64, as the fork rounds them."""
    h, w = (list(x.shape) + [1, 1, 1])[2:4]
    ih, iw = (list(image.shape) + [1, 1, 1])[2:4] if torch.is_tensor(image) else image
    f32 = torch.float32
    if step is None:
        step = (torch.tensor(float(ih), dtype=f32) / float(h), torch.tensor(float(iw), dtype=f32) / float(w))
    else:
        step = (torch.tensor(step[0], dtype=f32), torch.tensor(step[1], dtype=f32))
    cy = ((torch.arange(h, dtype=f32) + offset) * step[0]).double()
    cx = ((torch.arange(w, dtype=f32) + offset) * step[1]).double()
    cy, cx = (g.reshape(-1, 1) for g in torch.meshgrid(cy, cx, indexing="ij"))
    bw = torch.tensor([s[0] for s in sizes], dtype=f32).double()
    bh = torch.tensor([s[1] for s in sizes], dtype=f32).double()
    boxes = torch.stack([(cx - bw / 2) / iw, (cy - bh / 2) / ih, (cx + bw / 2) / iw, (cy + bh / 2) / ih], -1).float()
    if clip:
        boxes = boxes.clamp(0, 1)
    var = torch.tensor(variance, dtype=f32).expand(boxes.shape)
    return torch.stack([boxes.reshape(-1), var.reshape(-1)]).unsqueeze(0).to(x)
"#,
    },
    Helper {
        name: "caffe_roi_pool",
        deps: &[],
        code: r#"def caffe_roi_pool(x, rois, pooled_h, pooled_w, spatial_scale):
    """Fast R-CNN's ROIPooling: each region [image, x1, y1, x2, y2] (image pixels), scaled by spatial_scale
    and rounded half away from zero to map cells, is cut into pooled_h x pooled_w bins (floor and ceil of
    float32 multiples of its size, clipped to the map); each bin is the maximum of its cells, 0 if empty."""
    f32 = torch.float32
    h, w = x.shape[2], x.shape[3]
    regions = rois.reshape(-1, 5).detach().to("cpu", f32)
    cells = (regions[:, 1:] * torch.tensor(spatial_scale, dtype=f32)).tolist()
    out = x.new_zeros((regions.shape[0], x.shape[1], pooled_h, pooled_w))

    def rnd(v):
        return int(math.floor(abs(v) + 0.5)) * (1 if v >= 0 else -1)

    def bins(start, size, pooled, extent):
        step = torch.tensor(float(size), dtype=f32) / float(pooled)
        edges = []
        for p in range(pooled):
            lo = int(torch.floor(torch.tensor(float(p), dtype=f32) * step)) + start
            hi = int(torch.ceil(torch.tensor(float(p + 1), dtype=f32) * step)) + start
            edges.append((min(max(lo, 0), extent), min(max(hi, 0), extent)))
        return edges

    for r, (b, c) in enumerate(zip(regions[:, 0].tolist(), cells)):
        x1, y1, x2, y2 = (rnd(v) for v in c)
        rows = bins(y1, max(y2 - y1 + 1, 1), pooled_h, h)
        cols = bins(x1, max(x2 - x1 + 1, 1), pooled_w, w)
        for i, (h0, h1) in enumerate(rows):
            for j, (w0, w1) in enumerate(cols):
                if h1 > h0 and w1 > w0:
                    out[r, :, i, j] = x[int(b), :, h0:h1, w0:w1].flatten(1).max(1).values
    return out
"#,
    },
    Helper {
        name: "caffe_psroi_pool",
        deps: &[],
        code: r#"def caffe_psroi_pool(x, rois, spatial_scale, output_dim, group):
    """R-FCN's position-sensitive ROI pooling: each region's corners rounded
    (half away from zero), scaled, the end one pixel further, cut into
    group x group bins (f32 floor and ceil, clipped); bin (i, j) of output
    channel k is the mean of input channel (k * group + i) * group + j over it
    (0 when empty), from an integral image."""
    n, c, h, w = x.shape
    s = F.pad(x.double().cumsum(2).cumsum(3), (1, 0, 1, 0)).reshape(-1)
    r = rois.reshape(-1, 5).float()
    rnd = lambda v: torch.sign(v) * torch.floor(v.abs() + 0.5)
    scale = torch.tensor(spatial_scale, dtype=torch.float32)
    x1, y1 = rnd(r[:, 1]) * scale, rnd(r[:, 2]) * scale
    x2, y2 = (rnd(r[:, 3]) + 1) * scale, (rnd(r[:, 4]) + 1) * scale
    bw = (x2 - x1).clamp(min=0.1) / group
    bh = (y2 - y1).clamp(min=0.1) / group
    p = torch.arange(group, dtype=torch.float32, device=x.device)
    h0 = torch.floor(p[None] * bh[:, None] + y1[:, None]).long().clamp(0, h)
    h1 = torch.ceil((p[None] + 1) * bh[:, None] + y1[:, None]).long().clamp(0, h)
    w0 = torch.floor(p[None] * bw[:, None] + x1[:, None]).long().clamp(0, w)
    w1 = torch.ceil((p[None] + 1) * bw[:, None] + x1[:, None]).long().clamp(0, w)
    h1, w1 = torch.maximum(h1, h0), torch.maximum(w1, w0)
    k = torch.arange(output_dim, device=x.device)[None, :, None, None]
    i = torch.arange(group, device=x.device)[None, None, :, None]
    j = torch.arange(group, device=x.device)[None, None, None, :]
    base = (r[:, 0].long()[:, None, None, None] * c + (k * group + i) * group + j) * (h + 1) * (w + 1)
    rows0, rows1 = h0[:, None, :, None], h1[:, None, :, None]
    cols0, cols1 = w0[:, None, None, :], w1[:, None, None, :]
    at = lambda rr, cc: s[base + rr * (w + 1) + cc]
    total = at(rows1, cols1) - at(rows0, cols1) - at(rows1, cols0) + at(rows0, cols0)
    area = ((rows1 - rows0) * (cols1 - cols0)).clamp(min=1)
    return (total / area).to(x.dtype)
"#,
    },
    Helper {
        name: "caffe_proposal",
        deps: &[],
        code: r#"def caffe_proposal(scores, deltas, im_info, anchors, stride, min_size, pre, post, thresh):
    """Faster R-CNN's proposals, py-faster-rcnn's rules: the anchors at every
    cell moved by the deltas, clipped to im_info's image, boxes under
    min_size * scale dropped, the `pre` best scores, suppression at an IoU over
    `thresh` (pixel boxes, +1), the first `post`. Returns the regions
    [image, x1, y1, x2, y2] and their scores."""
    anchors = torch.tensor(anchors, dtype=scores.dtype, device=scores.device)
    a, (n, _, h, w) = anchors.shape[0], scores.shape
    ys = torch.arange(h, device=scores.device, dtype=scores.dtype) * stride
    xs = torch.arange(w, device=scores.device, dtype=scores.dtype) * stride
    sy, sx = torch.meshgrid(ys, xs, indexing="ij")
    boxes = (anchors[None] + torch.stack([sx, sy, sx, sy], -1).reshape(-1, 1, 4)).reshape(-1, 4)
    bw, bh = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    cx, cy = boxes[:, 0] + 0.5 * bw, boxes[:, 1] + 0.5 * bh
    regions, kept_scores = [], []
    for i in range(n):
        info = im_info.reshape(im_info.shape[0], -1)[i if im_info.shape[0] > 1 else 0]
        d = deltas[i].reshape(a, 4, h, w).permute(2, 3, 0, 1).reshape(-1, 4)
        s = scores[i, a:].permute(1, 2, 0).reshape(-1)
        pcx, pcy = d[:, 0] * bw + cx, d[:, 1] * bh + cy
        pw, ph = torch.exp(d[:, 2]) * bw, torch.exp(d[:, 3]) * bh
        b = torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], 1)
        limit = torch.stack([info[1], info[0], info[1], info[0]]) - 1
        b = torch.minimum(b, limit).clamp(min=0)
        big = (b[:, 2] - b[:, 0] + 1 >= min_size * info[2]) & (b[:, 3] - b[:, 1] + 1 >= min_size * info[2])
        b, s = b[big], s[big]
        order = torch.sort(s, stable=True).indices.flip(0)
        if pre > 0:
            order = order[:pre]
        b, s = b[order], s[order]
        areas = (b[:, 2] - b[:, 0] + 1) * (b[:, 3] - b[:, 1] + 1)
        suppressed = torch.zeros(len(b), dtype=torch.bool, device=b.device)
        keep = []
        for j in range(len(b)):
            if suppressed[j]:
                continue
            keep.append(j)
            if post > 0 and len(keep) == post:
                break
            iw = (torch.minimum(b[j, 2], b[j + 1:, 2]) - torch.maximum(b[j, 0], b[j + 1:, 0]) + 1).clamp(min=0)
            ih = (torch.minimum(b[j, 3], b[j + 1:, 3]) - torch.maximum(b[j, 1], b[j + 1:, 1]) + 1).clamp(min=0)
            inter = iw * ih
            suppressed[j + 1:] |= inter / (areas[j] + areas[j + 1:] - inter) > thresh
        keep = torch.tensor(keep, dtype=torch.long, device=b.device)
        regions.append(torch.cat([torch.full((len(keep), 1), float(i), dtype=b.dtype, device=b.device), b[keep]], 1))
        kept_scores.append(s[keep].reshape(-1, 1))
    return torch.cat(regions), torch.cat(kept_scores)
"#,
    },
    Helper {
        name: "caffe_detection_rows",
        deps: &[],
        code: r#"def caffe_detection_rows(rows, n, dtype):
    """DetectionOutput's top from its rows: 1 x 1 x rows x 7, or the forks'
    row [i, -1, ..., -1] per image of n when none was kept."""
    if not rows:
        rows = [torch.tensor([float(i)] + [-1.0] * 6, dtype=dtype) for i in range(n)]
    return torch.stack(rows).reshape(1, 1, -1, 7)
"#,
    },
    Helper {
        name: "caffe_detection_output",
        deps: &["caffe_detection_rows"],
        code: r#"def caffe_detection_output(loc, conf, prior, num_classes, share_location, background, code_type,
                           variance_in_target, keep_top_k, conf_thresh, nms_thresh, eta, top_k):
    """SSD's DetectionOutput, the fork's rules: each image's locations decoded
    against the priors (code_type 1 CORNER, 2 CENTER_SIZE, 3 CORNER_SIZE),
    per class other than the background the boxes scoring above conf_thresh,
    best first (ties in prior order), at most top_k, each kept unless it
    overlaps a kept one by more than the (adaptive) threshold; then the
    keep_top_k best over all classes. Rows [image, label, score, xmin, ymin,
    xmax, ymax] by image, label, then score; one row of -1 per image when
    nothing is kept. Returns 1 x 1 x rows x 7."""
    n, priors = loc.shape[0], prior.shape[-1] // 4
    loc_classes = 1 if share_location else num_classes
    pr = prior.reshape(2, priors, 4)
    box, var = pr[0].unsqueeze(1), pr[1].unsqueeze(1)
    rows = []
    for i in range(n):
        l = loc[i].reshape(priors, loc_classes, 4)
        v = l if variance_in_target else var * l
        if code_type == 1:
            d = box + v
        elif code_type == 3:
            pw, ph = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
            d = torch.stack([box[..., 0] + v[..., 0] * pw, box[..., 1] + v[..., 1] * ph,
                             box[..., 2] + v[..., 2] * pw, box[..., 3] + v[..., 3] * ph], -1)
        else:
            pw, ph = box[..., 2] - box[..., 0], box[..., 3] - box[..., 1]
            cx = v[..., 0] * pw + (box[..., 0] + box[..., 2]) / 2
            cy = v[..., 1] * ph + (box[..., 1] + box[..., 3]) / 2
            w, h = torch.exp(v[..., 2]) * pw, torch.exp(v[..., 3]) * ph
            d = torch.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1)
        c = conf[i].reshape(priors, num_classes)
        found = []
        for label in range(num_classes):
            if label == background:
                continue
            b = d[:, 0 if share_location else label]
            s = c[:, label]
            order = torch.sort(s, descending=True, stable=True).indices
            if conf_thresh is not None:
                order = order[s[order] > conf_thresh]
            if top_k > -1:
                order = order[:top_k]
            size = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).where((b[:, 2] >= b[:, 0]) & (b[:, 3] >= b[:, 1]),
                                                                        torch.zeros((), dtype=b.dtype))
            kept, thresh = [], nms_thresh
            for j in order.tolist():
                if kept:
                    k = torch.tensor(kept, dtype=torch.long)
                    iw = torch.minimum(b[k, 2], b[j, 2]) - torch.maximum(b[k, 0], b[j, 0])
                    ih = torch.minimum(b[k, 3], b[j, 3]) - torch.maximum(b[k, 1], b[j, 1])
                    inter = iw * ih
                    overlap = (inter / (size[j] + size[k] - inter)).where((iw > 0) & (ih > 0),
                                                                          torch.zeros((), dtype=b.dtype))
                    if bool((overlap > thresh).any()):
                        continue
                kept.append(j)
                if eta < 1 and thresh > 0.5:
                    thresh *= eta
            found += [(label, j, s[j], b[j]) for j in kept]
        if keep_top_k > -1 and len(found) > keep_top_k:
            scores = torch.stack([f[2] for f in found])
            best = torch.sort(scores, descending=True, stable=True).indices[:keep_top_k]
            found = [found[k] for k in sorted(best.tolist())]
        for label, j, score, b in found:
            rows.append(torch.cat([torch.tensor([float(i), float(label)], dtype=loc.dtype), score.reshape(1), b]))
    return caffe_detection_rows(rows, n, loc.dtype)
"#,
    },
    Helper {
        name: "caffe_yolo_rows",
        deps: &[],
        code: r#"def caffe_yolo_rows(image, cx, cy, bw, bh, cls, conf, keep, nms_thresh):
    """One image's YOLO rows: the kept candidates best first (ties in their
    order), suppressed greedily across classes at IoU >= nms_thresh (the
    forks' overlap of centre-size boxes); rows [image, class + 1,
    confidence, xmin, ymin, xmax, ymax]."""
    cx, cy, bw, bh, cls, conf = cx[keep], cy[keep], bw[keep], bh[keep], cls[keep], conf[keep]
    order = torch.sort(conf, descending=True, stable=True).indices
    cx, cy, bw, bh, cls, conf = cx[order], cy[order], bw[order], bh[order], cls[order], conf[order]
    suppressed = torch.zeros(len(conf), dtype=torch.bool, device=conf.device)
    rows = []
    for j in range(len(conf)):
        if suppressed[j]:
            continue
        ow = torch.minimum(cx[j] + bw[j] / 2, cx[j + 1:] + bw[j + 1:] / 2) - \
            torch.maximum(cx[j] - bw[j] / 2, cx[j + 1:] - bw[j + 1:] / 2)
        oh = torch.minimum(cy[j] + bh[j] / 2, cy[j + 1:] + bh[j + 1:] / 2) - \
            torch.maximum(cy[j] - bh[j] / 2, cy[j + 1:] - bh[j + 1:] / 2)
        inter = (ow * oh).where((ow >= 0) & (oh >= 0), torch.zeros((), dtype=ow.dtype))
        suppressed[j + 1:] |= inter / (bw[j] * bh[j] + bw[j + 1:] * bh[j + 1:] - inter) >= nms_thresh
        rows.append(torch.stack([torch.tensor(float(image), dtype=conf.dtype), (cls[j] + 1).to(conf.dtype), conf[j],
                                 cx[j] - bw[j] / 2, cy[j] - bh[j] / 2, cx[j] + bw[j] / 2, cy[j] + bh[j] / 2]))
    return rows
"#,
    },
    Helper {
        name: "caffe_yolo_detection_output",
        deps: &["caffe_yolo_rows", "caffe_detection_rows"],
        code: r#"def caffe_yolo_detection_output(maps, classes, boxes, conf_thresh, nms_thresh, biases):
    """YOLOv2's detections (MobileNet-YOLO's YoloDetectionOutput): per square
    map, cell and anchor, x = (column + sigmoid(tx)) / S, y likewise, w = e^tw
    * bias_w / S, h likewise; the class is the arg-max of the softmax of the
    class scores (the first on ties) and the confidence sigmoid(objectness)
    times its probability; those at or above conf_thresh best first (ties in
    (map, cell, anchor) order), suppressed across classes at IoU >=
    nms_thresh. Rows [image, class + 1, confidence, xmin, ymin, xmax, ymax]
    per image; one row of -1 per image when nothing is kept."""
    n = maps[0].shape[0]
    rows = []
    for i in range(n):
        found = []
        for m in maps:
            side = m.shape[3]
            x = m[i].reshape(boxes, 5 + classes, side * side).permute(2, 0, 1)
            cell = torch.arange(side * side, device=m.device)
            col, row = (cell % side).to(m.dtype).reshape(-1, 1), (cell // side).to(m.dtype).reshape(-1, 1)
            b = torch.tensor(biases[:2 * boxes], dtype=m.dtype, device=m.device).reshape(boxes, 2)
            e = torch.exp(x[..., 5:] - x[..., 5:].max(-1, keepdim=True).values)
            prob = e / e.sum(-1, keepdim=True)
            best, cls = prob.max(-1)
            found.append(((col + torch.sigmoid(x[..., 0])) / side, (row + torch.sigmoid(x[..., 1])) / side,
                          torch.exp(x[..., 2]) * b[:, 0] / side, torch.exp(x[..., 3]) * b[:, 1] / side,
                          cls, torch.sigmoid(x[..., 4]) * best))
        cx, cy, bw, bh, cls, conf = (torch.cat([v.reshape(-1) for v in vs]) for vs in zip(*found))
        keep = conf >= conf_thresh
        rows += caffe_yolo_rows(i, cx, cy, bw, bh, cls, conf, keep, nms_thresh)
    return caffe_detection_rows(rows, n, maps[0].dtype)
"#,
    },
    Helper {
        name: "caffe_yolov3_detection_output",
        deps: &["caffe_yolo_rows", "caffe_detection_rows"],
        code: r#"def caffe_yolov3_detection_output(maps, classes, boxes, conf_thresh, nms_thresh, anchors, strides):
    """YOLOv3's detections (MobileNet-YOLO's Yolov3DetectionOutput): per scale,
    cell and anchor, x = (column + sigmoid(tx)) / W, y likewise, w = e^tw *
    anchor width / (W * stride), h likewise; per class the confidence
    sigmoid(class) * sigmoid(objectness); those above conf_thresh best first
    (ties in (scale, cell, anchor, class) order), suppressed across classes
    at IoU >= nms_thresh. Rows [image, class + 1, confidence, xmin, ymin,
    xmax, ymax] per image, best first; one row of -1 per image when nothing
    is kept. `anchors` holds each scale's (width, height) pairs."""
    n = maps[0].shape[0]
    rows = []
    for i in range(n):
        found = []
        for m, scale_anchors, stride in zip(maps, anchors, strides):
            _, _, h, w = m.shape
            x = m[i].reshape(boxes, 5 + classes, h * w).permute(2, 0, 1)
            cell = torch.arange(h * w, device=m.device)
            col, row = (cell % w).to(m.dtype).reshape(-1, 1), (cell // w).to(m.dtype).reshape(-1, 1)
            a = torch.tensor(scale_anchors, dtype=m.dtype, device=m.device)
            cx, cy = (col + torch.sigmoid(x[..., 0])) / w, (row + torch.sigmoid(x[..., 1])) / h
            bw = torch.exp(x[..., 2]) * a[:, 0] / (w * stride)
            bh = torch.exp(x[..., 3]) * a[:, 1] / (h * stride)
            conf = torch.sigmoid(x[..., 5:]) * torch.sigmoid(x[..., 4:5])
            spread = lambda v: v.unsqueeze(-1).expand(conf.shape).reshape(-1)
            found.append((spread(cx), spread(cy), spread(bw), spread(bh),
                          torch.arange(classes, device=m.device).expand(conf.shape).reshape(-1), conf.reshape(-1)))
        cx, cy, bw, bh, cls, conf = (torch.cat(v) for v in zip(*found))
        keep = conf > conf_thresh
        rows += caffe_yolo_rows(i, cx, cy, bw, bh, cls, conf, keep, nms_thresh)
    return caffe_detection_rows(rows, n, maps[0].dtype)
"#,
    },
];
