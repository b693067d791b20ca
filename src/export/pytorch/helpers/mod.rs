//! The Python functions `model.py` uses where a Caffe layer's semantics are
//! not one torch call: each is written into `model.py` only when a layer
//! uses it, after the helpers it calls.

mod detection;

/// A helper: its name, the helpers it calls, its Python source.
pub(super) struct Helper {
    pub name: &'static str,
    pub deps: &'static [&'static str],
    pub code: &'static str,
}

const GENERAL: &[Helper] = &[
    Helper {
        name: "Blobs",
        deps: &[],
        code: r#"class Blobs(nn.Module):
    """A Caffe layer's blobs in Caffe's shapes, under PyTorch's names: learned
    ones as parameters, BatchNorm's running statistics as buffers."""

    def __init__(self, params=(), buffers=()):
        super().__init__()
        for name, shape in params:
            setattr(self, name, nn.Parameter(torch.empty(shape)))
        for name, shape in buffers:
            self.register_buffer(name, torch.empty(shape))
"#,
    },
    Helper {
        name: "caffe_pooled_size",
        deps: &[],
        code: r#"def caffe_pooled_size(n, k, s, p, ceil=True):
    """Caffe's pooled size: rounded up (or down), minus a last window that would start in the padding."""
    span = n + 2 * p - k
    out = (-(-span // s) if ceil else span // s) + 1
    if p > 0 and (out - 1) * s >= n + p:
        out -= 1
    return out
"#,
    },
    Helper {
        name: "caffe_pool2d",
        deps: &["caffe_pooled_size"],
        code: r#"def caffe_pool2d(x, pool, kernel, stride=(1, 1), pad=(0, 0), ceil=True):
    """Caffe's MAX / AVE pooling (and STOCHASTIC's TEST form) with Caffe's
    output size. The input is padded (or cropped) so that exactly the output's
    windows fit: MAX pads with -inf (a window of padding only gives -FLT_MAX,
    as in Caffe); AVE divides each window's sum by its size clipped to the
    padded input (padding counted, the overhang past it not)."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = x.shape[2:], kernel, stride, pad
    oh, ow = caffe_pooled_size(h, kh, sh, ph, ceil), caffe_pooled_size(w, kw, sw, pw, ceil)
    eh, ew = (oh - 1) * sh + kh - h - ph, (ow - 1) * sw + kw - w - pw
    if pool == "max":
        y = F.max_pool2d(F.pad(x, (pw, ew, ph, eh), value=-math.inf), (kh, kw), (sh, sw))
        return y.clamp(min=-FLT_MAX)
    if pool == "ave":
        total = F.avg_pool2d(F.pad(x, (pw, ew, ph, eh)), (kh, kw), (sh, sw), divisor_override=1)

        def clipped(o, k, s, p, n):
            start = torch.arange(o, device=x.device) * s - p
            return (torch.clamp(start + k, max=n + p) - start).to(x.dtype)

        return total / (clipped(oh, kh, sh, ph, h)[:, None] * clipped(ow, kw, sw, pw, w)[None, :])
    # STOCHASTIC at TEST: the probability-weighted average, sum x^2 / sum x.
    squares = F.avg_pool2d(F.pad(x * x, (0, ew, 0, eh)), (kh, kw), (sh, sw), divisor_override=1)
    total = F.avg_pool2d(F.pad(x, (0, ew, 0, eh)), (kh, kw), (sh, sw), divisor_override=1)
    return squares / (total + FLT_MIN)
"#,
    },
    Helper {
        name: "caffe_spp",
        deps: &["caffe_pool2d"],
        code: r#"def caffe_spp(x, pyramid_height, pool):
    """Caffe's spatial pyramid pooling: level l pools into 2^l x 2^l bins
    (kernel = stride = ceil(size / bins), pad = (kernel * bins - size + 1) // 2);
    one level gives its 4-D output, several their flattened outputs concatenated."""
    h, w = x.shape[2:]
    outs = []
    for level in range(pyramid_height):
        bins = 2**level
        kh, kw = -(-h // bins), -(-w // bins)
        pad = ((kh * bins - h + 1) // 2, (kw * bins - w + 1) // 2)
        outs.append(caffe_pool2d(x, pool, (kh, kw), (kh, kw), pad))
    return outs[0] if pyramid_height == 1 else torch.cat([o.flatten(1) for o in outs], 1)
"#,
    },
    Helper {
        name: "caffe_lrn",
        deps: &[],
        code: r#"def caffe_lrn(x, size, alpha, beta, k=1.0, across_channels=True):
    """Caffe's LRN. ACROSS_CHANNELS: x * (k + alpha/size * sum of x^2 over size
    channels, zero padded)^-beta. WITHIN_CHANNEL: x * (1 + alpha * mean of x^2
    over a size x size window, padding counted)^-beta (k unused)."""
    pad = (size - 1) // 2
    sq = x * x
    if across_channels:
        c = x.shape[1]
        padded = F.pad(sq, (0, 0, 0, 0, pad, pad))
        scale = k + alpha / size * sum(padded[:, i : i + c] for i in range(size))
    else:
        scale = 1 + alpha * F.avg_pool2d(sq, size, 1, pad, count_include_pad=True)
    return x * scale.pow(-beta)
"#,
    },
    Helper {
        name: "caffe_reshape",
        deps: &[],
        code: r#"def caffe_reshape(x, dims, axis=0, num_axes=-1):
    """Caffe's Reshape: dims replace axes axis .. axis+num_axes; 0 copies the axis, -1 is inferred."""
    start = axis if axis >= 0 else x.dim() + axis + 1
    end = x.dim() if num_axes == -1 else start + num_axes
    mid = [x.shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
    return x.reshape(list(x.shape[:start]) + mid + list(x.shape[end:]))
"#,
    },
    Helper {
        name: "caffe_mvn",
        deps: &[],
        code: r#"def caffe_mvn(x, normalize_variance=True, across_channels=False, eps=1e-9):
    """Caffe's MVN: subtract the mean (and divide by std + eps) per item, or per item and channel."""
    shape = list(x.shape) + [1] * (4 - x.dim())
    flat = x.reshape(shape[0] if across_channels else shape[0] * shape[1], -1)
    y = flat - flat.mean(1, keepdim=True)
    if normalize_variance:
        y = y / ((y * y).mean(1, keepdim=True).sqrt() + eps)
    return y.reshape(x.shape)
"#,
    },
    Helper {
        name: "caffe_normalize",
        deps: &[],
        code: r#"def caffe_normalize(x, scale, across_spatial=True, eps=1e-10):
    """The SSD fork's Normalize: x / sqrt(sum of squares + eps) over each sample (across_spatial) or over
    the channels at each position, times the scale (one value, or one per channel)."""
    shape = list(x.shape) + [1] * (4 - x.dim())
    x3 = x.reshape(shape[0], shape[1], -1)
    dims = (1, 2) if across_spatial else (1,)
    y = x3 / ((x3 * x3).sum(dims, keepdim=True) + eps).sqrt()
    return (y * scale.reshape(1, -1, 1)).reshape(x.shape)
"#,
    },
    Helper {
        name: "caffe_reduction",
        deps: &[],
        code: r#"def caffe_reduction(x, op, axis, coeff=1.0):
    """Caffe's Reduction over all axes from axis on, times coeff."""
    rows = x.reshape(list(x.shape[:axis]) + [-1])
    y = {"sum": rows, "mean": rows, "asum": rows.abs(), "sumsq": rows * rows}[op].sum(-1)
    if op == "mean":
        coeff = coeff / rows.shape[-1]
    return y * coeff if coeff != 1 else y
"#,
    },
    Helper {
        name: "caffe_argmax",
        deps: &[],
        code: r#"def caffe_argmax(x, top_k=1, out_max_val=False, axis=None):
    """Caffe's ArgMax: the top_k indices (as floats; ties go to the higher
    index) or values along axis, or over each item flattened, where
    out_max_val gives the indices then the values."""

    def top(t, dim):
        values, idx = torch.sort(t.flip(dim), dim=dim, descending=True, stable=True)
        return values.narrow(dim, 0, top_k), (t.shape[dim] - 1 - idx.narrow(dim, 0, top_k)).to(t.dtype)

    if axis is not None:
        values, idx = top(x, axis)
        return values if out_max_val else idx
    values, idx = top(x.reshape(x.shape[0], -1), 1)
    y = torch.cat([idx, values], 1) if out_max_val else idx
    return y.reshape([x.shape[0], 2 if out_max_val else 1, top_k] + [1] * (x.dim() - 3))
"#,
    },
    Helper {
        name: "caffe_dropin",
        deps: &[],
        code: r#"def caffe_dropin(skip, new, k):
    """DropIn during its ramp: within each item, the first k units (C, H, W order) from the skip path, the rest from the new layer."""
    take = (torch.arange(skip[0].numel(), device=skip.device) < k).reshape(skip.shape[1:])
    return torch.where(take, skip, new)
"#,
    },
    Helper {
        name: "caffe_resize",
        deps: &[],
        code: r#"def caffe_resize(x, channels, height, width, mode):
    """Resize: channels repeated cyclically (or cut), then bilinear or nearest interpolation to height x width."""
    if channels != x.shape[1]:
        x = x.index_select(1, torch.arange(channels, device=x.device) % x.shape[1])
    if (height, width) != tuple(x.shape[2:]):
        x = F.interpolate(x, size=(height, width), mode=mode, align_corners=False if mode == "bilinear" else None)
    return x
"#,
    },
    Helper {
        name: "caffe_max_pool2d_mask",
        deps: &["caffe_pool2d"],
        code: r#"def caffe_max_pool2d_mask(x, kernel, stride=(1, 1), pad=(0, 0), ceil=True):
    """Caffe's MAX pooling with its second top, the mask: each window's first
    maximum as h * W + w of the input plane (a float), -1 where a window holds
    padding only."""
    (h, w), (kh, kw), (sh, sw), (ph, pw) = x.shape[2:], kernel, stride, pad
    oh, ow = caffe_pooled_size(h, kh, sh, ph, ceil), caffe_pooled_size(w, kw, sw, pw, ceil)
    eh, ew = (oh - 1) * sh + kh - h - ph, (ow - 1) * sw + kw - w - pw
    padded = F.pad(x, (pw, max(ew, 0), ph, max(eh, 0)), value=-math.inf)[:, :, : ph + h + eh, : pw + w + ew]
    y, index = F.max_pool2d(padded, (kh, kw), (sh, sw), return_indices=True)
    padded_w = padded.shape[3]
    mask = ((index // padded_w - ph) * w + index % padded_w - pw).to(x.dtype)
    empty = torch.isneginf(y)
    return y.clamp(min=-FLT_MAX), mask.masked_fill(empty, -1.0)
"#,
    },
    Helper {
        name: "caffe_interp",
        deps: &[],
        code: r#"def caffe_interp(x, height=None, width=None, zoom=None, shrink=None, pad_beg=0, pad_end=0, like=None):
    """DeepLab v2's Interp: crop -pad_beg at the start and -pad_end at the end,
    then bilinear interpolation with the corners aligned to height x width,
    the cropped size shrunk and/or zoomed, or the size of `like`."""
    h, w = x.shape[2] + pad_beg + pad_end, x.shape[3] + pad_beg + pad_end
    x = x[:, :, -pad_beg : -pad_beg + h, -pad_beg : -pad_beg + w]
    if like is not None:
        size = tuple(like.shape[2:])
    elif shrink is not None or zoom is not None:
        size = (h, w)
        if shrink is not None:
            size = tuple((s - 1) // shrink + 1 for s in size)
        if zoom is not None:
            size = tuple(s + (s - 1) * (zoom - 1) for s in size)
    else:
        size = (height, width)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)
"#,
    },
    Helper {
        name: "caffe_unpool",
        deps: &[],
        code: r#"def caffe_unpool(x, mask, height, width):
    """SegNet's Upsample: each value written at its mask's index h * W + w of
    a zero height x width plane."""
    n, c = x.shape[:2]
    index = mask.long().reshape(n, c, -1)
    y = x.new_zeros(n, c, height * width).scatter(2, index, x.reshape(n, c, -1))
    return y.reshape(n, c, height, width)
"#,
    },
    Helper {
        name: "caffe_bn_batch",
        deps: &[],
        code: r#"def caffe_bn_batch(x, weight, bias, eps, centred):
    """The forks' BN with the batch's statistics over N, H and W: the variance
    is yjxiong's mean of (x - mean)^2 when centred, SegNet's E[x^2] - mean^2
    otherwise."""
    mean = x.mean((0, 2, 3), keepdim=True)
    if centred:
        var = ((x - mean) ** 2).mean((0, 2, 3), keepdim=True)
    else:
        var = (x * x).mean((0, 2, 3), keepdim=True) - mean * mean
    return (x - mean) / torch.sqrt(var + eps) * weight + bias
"#,
    },
    Helper {
        name: "caffe_lstm_step",
        deps: &[],
        code: r#"def caffe_lstm_step(c_prev, gates, cont):
    """One LSTM step (Caffe's LSTMUnit): gates in the order i, f, o, g; cont = 0 resets the cell."""
    i, f, o, g = gates.chunk(4, -1)
    c = torch.sigmoid(f) * cont * c_prev + torch.sigmoid(i) * torch.tanh(g)
    return c, torch.sigmoid(o) * torch.tanh(c)
"#,
    },
    Helper {
        name: "caffe_recurrent",
        deps: &["caffe_lstm_step"],
        code: r#"def caffe_recurrent(lstm, x, cont, w_x, b_x, w_h, x_static=None, w_static=None, h0=None, c0=None, w_o=None, b_o=None):
    """Caffe's LSTM or RNN layer over T steps of x (T x N x ...), cont (T x N)
    masking the previous state; the state starts at h0/c0 or zero. Returns
    the outputs and the final h and c (1 x N x hidden)."""
    steps, n = cont.shape
    hidden = w_h.shape[1]
    xs = F.linear(x.reshape(steps, n, -1), w_x, b_x)
    if x_static is not None:
        xs = xs + F.linear(x_static.reshape(n, -1), w_static).unsqueeze(0)
    h = x.new_zeros(n, hidden) if h0 is None else h0.reshape(n, hidden)
    c = x.new_zeros(n, hidden) if c0 is None else c0.reshape(n, hidden)
    hs = []
    for t in range(steps):
        cont_t = cont[t].reshape(n, 1).to(x.dtype)
        pre = xs[t] + F.linear(h * cont_t, w_h)
        if lstm:
            c, h = caffe_lstm_step(c, pre, cont_t)
        else:
            h = torch.tanh(pre)
        hs.append(h)
    out = torch.stack(hs)
    if not lstm:
        out = torch.tanh(F.linear(out, w_o, b_o))
    return out, h.reshape(1, n, hidden), c.reshape(1, n, hidden)
"#,
    },
];

/// Every helper: the general ones, then the detectors' (`detection.rs`).
pub(super) fn all() -> impl Iterator<Item = &'static Helper> {
    GENERAL.iter().chain(detection::DETECTION)
}

/// `names` and every helper they call, in an order where each comes after what it calls.
pub(super) fn closure(names: &[&'static str]) -> Vec<&'static Helper> {
    let mut out: Vec<&'static Helper> = Vec::new();
    fn visit(name: &str, out: &mut Vec<&'static Helper>) {
        let Some(h) = all().find(|h| h.name == name) else { return };
        if out.iter().any(|o| o.name == name) {
            return;
        }
        for d in h.deps {
            visit(d, out);
        }
        out.push(h);
    }
    for n in names {
        visit(n, &mut out);
    }
    out
}
