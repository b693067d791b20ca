//! Pooling: MAX, AVE and STOCHASTIC, with Caffe's output size (ceil by
//! default, `round_mode: FLOOR` optional, and with padding the last window
//! dropped when it would start in the padding) and Caffe's AVE divisor (the
//! window clipped to the padded input). libtorch's ceil_mode and
//! count_include_pad follow the same rules in the common cases, so MAX and
//! AVE map onto its kernels; the rest (pad over half the kernel, or an empty
//! ceil-mode window when stride > kernel) pools over explicit windows.
//! MAX takes an optional second top, Caffe's mask: the index h·W + w in its
//! input plane of each window's first maximum (as a float, -1 for a window
//! that holds padding only), which SegNet's Upsample reads.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{check_bottoms, Ctx, Layer, SetupOut, Shape};
use crate::proto::caffe::pooling_parameter::{PoolMethod, RoundMode};
use crate::proto::caffe::{LayerParameter, PoolingParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "Pooling",
        family: family_of(file!()),
        params: "pool (MAX, AVE, STOCHASTIC), kernel_size|kernel_h/w, stride|stride_h/w, pad|pad_h/w, global_pooling, round_mode (or the forks' ceil_mode, upgraded to it); MAX's mask top",
        tests: "parity (lenet, cifar10, resnet_small), gradient check, output-size tests, pooling_mask_*",
        create: |p| Ok(Box::new(Pooling::new(p))),
    });
}

#[derive(Debug, Clone, Copy, Default)]
struct Window {
    k: [i64; 2],
    s: [i64; 2],
    p: [i64; 2],
}

pub struct Pooling {
    p: PoolingParameter,
    win: Window,
    out: [i64; 2],
    in_hw: [i64; 2],
    /// Whether libtorch's pooling kernels give Caffe's output size and windows.
    libtorch_ok: bool,
    /// MAX's second top, the argmax mask, is asked for.
    with_mask: bool,
}

impl Pooling {
    fn new(lp: &LayerParameter) -> Self {
        Pooling { with_mask: lp.top.len() == 2, ..Pooling::from_param(lp.pooling_param.unwrap_or_default()) }
    }

    /// A pooling stage built from its parameters (SPP builds one per level).
    pub fn from_param(p: PoolingParameter) -> Self {
        Pooling { p, win: Window::default(), out: [0, 0], in_hw: [0, 0], libtorch_ok: true, with_mask: false }
    }
}

/// Caffe's pooled size along one axis.
pub fn pooled_size(input: i64, k: i64, s: i64, p: i64, ceil: bool) -> i64 {
    let span = input + 2 * p - k;
    let mut out = if ceil { (span + s - 1).div_euclid(s) + 1 } else { span.div_euclid(s) + 1 };
    if p > 0 && (out - 1) * s >= input + p {
        out -= 1;
    }
    out
}

impl Layer for Pooling {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        if s.len() != 4 {
            bail!("Pooling needs a 4-D bottom (N, C, H, W), got {s:?}");
        }
        let p = &self.p;
        let (h, w) = (s[2], s[3]);
        let pair = |v: Option<u32>, hv: Option<u32>, wv: Option<u32>, default: i64| -> [i64; 2] {
            match (hv, wv) {
                (Some(a), Some(b)) => [a as i64, b as i64],
                _ => {
                    let x = v.map(|x| x as i64).unwrap_or(default);
                    [x, x]
                }
            }
        };
        let mut win = Window {
            k: pair(p.kernel_size, p.kernel_h, p.kernel_w, 0),
            s: pair(p.stride, p.stride_h, p.stride_w, 1),
            p: pair(p.pad, p.pad_h, p.pad_w, 0),
        };
        if p.global_pooling() {
            if p.kernel_size.is_some() || p.kernel_h.is_some() {
                bail!("with global_pooling the kernel size cannot be given");
            }
            win = Window { k: [h, w], s: [1, 1], p: [0, 0] };
        } else if win.k[0] <= 0 || win.k[1] <= 0 {
            bail!("kernel_size (or kernel_h and kernel_w) must be given and positive");
        }
        if win.s[0] <= 0 || win.s[1] <= 0 {
            bail!("stride must be positive");
        }
        for i in 0..2 {
            if win.p[i] >= win.k[i] {
                bail!("pad ({}) must be smaller than the kernel ({})", win.p[i], win.k[i]);
            }
        }
        if self.with_mask && p.pool() != PoolMethod::Max {
            bail!("only MAX pooling has a second top (the mask); {:?} pooling takes one", p.pool());
        }
        if (win.p[0] > 0 || win.p[1] > 0) && p.pool() != PoolMethod::Max && p.pool() != PoolMethod::Ave {
            bail!("padding is implemented only for MAX and AVE pooling");
        }
        let ceil = p.round_mode() == RoundMode::Ceil;
        let out =
            [pooled_size(h, win.k[0], win.s[0], win.p[0], ceil), pooled_size(w, win.k[1], win.s[1], win.p[1], ceil)];
        if out[0] <= 0 || out[1] <= 0 {
            bail!("pooled size {out:?} is not positive for input {h}x{w}");
        }
        // libtorch drops a ceil-mode last window that starts past the input
        // even without padding (Caffe keeps it), and caps pads at half the kernel.
        let torch_size = |i: usize| {
            let n = pooled_size([h, w][i], win.k[i], win.s[i], win.p[i], ceil);
            if ceil && (n - 1) * win.s[i] >= [h, w][i] + win.p[i] {
                n - 1
            } else {
                n
            }
        };
        self.libtorch_ok = (0..2).all(|i| win.p[i] * 2 <= win.k[i] && torch_size(i) == out[i]);
        self.win = win;
        self.out = out;
        self.in_hw = [h, w];
        let top = vec![s[0], s[1], out[0], out[1]];
        let tops = if self.with_mask { vec![top.clone(), top] } else { vec![top] };
        Ok(SetupOut { tops, params: vec![] })
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], _params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let size = x.size();
        if size.len() != 4 {
            bail!("Pooling needs a 4-D bottom (N, C, H, W), got {size:?}");
        }
        if [size[2], size[3]] != self.in_hw {
            // A new input size: Caffe reshapes, and so do we.
            self.setup(std::slice::from_ref(&size))?;
        }
        let w = self.win;
        let ceil = self.p.round_mode() == RoundMode::Ceil;
        if self.with_mask {
            let (y, mask) = if self.libtorch_ok {
                let (y, idx) = x.f_max_pool2d_with_indices(w.k, w.s, w.p, [1, 1], ceil)?;
                (y, idx.f_to_kind(x.kind())?)
            } else {
                self.window_max_with_mask(x)?
            };
            return Ok(vec![y, mask.detach()]);
        }
        let y = match self.p.pool() {
            PoolMethod::Max | PoolMethod::Ave if !self.libtorch_ok => self.window_pool(x)?,
            PoolMethod::Max => x.f_max_pool2d(w.k, w.s, w.p, [1, 1], ceil)?,
            PoolMethod::Ave => x.f_avg_pool2d(w.k, w.s, w.p, ceil, true, None::<i64>)?,
            PoolMethod::Stochastic => self.stochastic(x, ctx.train())?,
        };
        let out = y.size();
        if out[2] != self.out[0] || out[3] != self.out[1] {
            bail!("pooled to {}x{} where Caffe pools to {}x{}", out[2], out[3], self.out[0], self.out[1]);
        }
        Ok(vec![y])
    }
}

impl Pooling {
    /// The windows of `x` as [N, C, out_h, out_w, k_h*k_w], zero-padded on the
    /// bottom/right so ceil-mode windows exist (zeros add nothing to sums).
    fn windows(&self, x: &Tensor, pad_value: f64) -> Result<Tensor> {
        let w = self.win;
        let size = x.size();
        let need_h = (self.out[0] - 1) * w.s[0] + w.k[0];
        let need_w = (self.out[1] - 1) * w.s[1] + w.k[1];
        let extra_h = (need_h - size[2] - w.p[0]).max(0);
        let extra_w = (need_w - size[3] - w.p[1]).max(0);
        // Padding and windows are materialised here: check their size first,
        // so a huge pad or kernel is an error, not an out-of-memory kill.
        let padded = [size[0], size[1], size[2] + w.p[0] + extra_h, size[3] + w.p[1] + extra_w];
        crate::util::limits::checked_count(&padded, 4, "the padded input of the pooling windows")?;
        let windows = [size[0], size[1], self.out[0], self.out[1], w.k[0], w.k[1]];
        crate::util::limits::checked_count(&windows, 4, "the pooling windows")?;
        let padded = x.f_constant_pad_nd([w.p[1], extra_w, w.p[0], extra_h])?;
        let padded = if pad_value != 0.0 {
            // Mark the padding so MAX ignores it.
            let ones = x.ones_like().f_constant_pad_nd([w.p[1], extra_w, w.p[0], extra_h])?;
            padded.where_self(&ones.ne(0.0), &padded.full_like(pad_value))
        } else {
            padded
        };
        let u = padded.f_unfold(2, w.k[0], w.s[0])?.f_unfold(3, w.k[1], w.s[1])?;
        let u = u.narrow(2, 0, self.out[0]).narrow(3, 0, self.out[1]);
        Ok(u.reshape([size[0], size[1], self.out[0], self.out[1], w.k[0] * w.k[1]]))
    }

    /// MAX/AVE over explicit windows, where libtorch's kernels differ from
    /// Caffe: a pad over half the kernel, or a ceil-mode last window that
    /// starts past the input without padding (stride > kernel). Caffe keeps
    /// such an empty window: MAX gives -FLT_MAX there and AVE 0/0 = NaN.
    fn window_pool(&self, x: &Tensor) -> Result<Tensor> {
        let w = self.win;
        match self.p.pool() {
            PoolMethod::Max => {
                // max_dim routes the gradient to one unit per window, as Caffe's argmax does.
                let (m, _) = self.windows(x, f64::NEG_INFINITY)?.f_max_dim(4, false)?;
                let floor = m.f_full_like(-(f32::MAX as f64))?;
                Ok(m.f_where_self(&m.f_isneginf()?.f_logical_not()?, &floor)?)
            }
            _ => {
                // Divisor: the window clipped to the padded input.
                let size = x.size();
                let div: Vec<f64> = (0..self.out[0])
                    .flat_map(|i| (0..self.out[1]).map(move |j| (i, j)))
                    .map(|(i, j)| {
                        let hs = i * w.s[0] - w.p[0];
                        let ws = j * w.s[1] - w.p[1];
                        let he = (hs + w.k[0]).min(size[2] + w.p[0]);
                        let we = (ws + w.k[1]).min(size[3] + w.p[1]);
                        ((he - hs) * (we - ws)) as f64
                    })
                    .collect();
                let div = Tensor::from_slice(&div)
                    .reshape([self.out[0], self.out[1]])
                    .to_kind(x.kind())
                    .to_device(x.device());
                Ok(self.windows(x, 0.0)?.sum_dim_intlist([4i64].as_slice(), false, x.kind()).f_div(&div)?)
            }
        }
    }

    /// MAX over explicit windows with Caffe's mask: each window's first
    /// maximum as h·W + w of the input plane, -1 (and -FLT_MAX) where the
    /// window holds padding only.
    fn window_max_with_mask(&self, x: &Tensor) -> Result<(Tensor, Tensor)> {
        let w = self.win;
        let (m, k) = self.windows(x, f64::NEG_INFINITY)?.f_max_dim(4, false)?;
        let device = x.device();
        let rows = Tensor::f_arange(self.out[0], (tch::Kind::Int64, device))?.f_mul_scalar(w.s[0])?.f_view([-1, 1])?;
        let cols = Tensor::f_arange(self.out[1], (tch::Kind::Int64, device))?.f_mul_scalar(w.s[1])?;
        let h = rows.f_add(&k.f_floor_divide_scalar(w.k[1])?)?.f_sub_scalar(w.p[0])?;
        let col = cols.f_add(&k.f_remainder(w.k[1])?)?.f_sub_scalar(w.p[1])?;
        let index = h.f_mul_scalar(x.size()[3])?.f_add(&col)?.f_to_kind(x.kind())?;
        let empty = m.f_isneginf()?;
        let mask = index.f_masked_fill(&empty, -1.0)?;
        let y = m.f_masked_fill(&empty, -(f32::MAX as f64))?;
        Ok((y, mask))
    }

    /// Stochastic pooling (Caffe has it on the GPU only; these are its
    /// kernels' rules). TRAIN picks one unit per window with probability
    /// proportional to its value (the first unit of an all-zero window, as
    /// Caffe's cumulative-sum search does), and the gradient flows to that
    /// unit only. TEST outputs Σx² / (FLT_MIN + Σx) over the window.
    /// Inputs are meant to be non-negative (after a ReLU); negative units get
    /// probability 0 here, while Caffe's search has no defined distribution.
    fn stochastic(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let win = self.windows(x, 0.0)?;
        if train {
            let shape = win.size();
            let k = shape[4];
            let flat = win.reshape([-1, k]);
            let probs = tch::no_grad(|| {
                let weights = flat.detach().clamp_min(0.0);
                let total = weights.sum_dim_intlist([1i64].as_slice(), true, weights.kind());
                let first = weights.zeros_like().index_fill(1, &Tensor::from_slice(&[0i64]).to_device(x.device()), 1.0);
                weights.where_self(&total.gt(0.0), &first)
            });
            let idx = probs.f_multinomial(1, false)?;
            Ok(flat.gather(1, &idx, false).reshape(&shape[..4]))
        } else {
            let sq = (&win * &win).sum_dim_intlist([4i64].as_slice(), false, x.kind());
            let sum = win.sum_dim_intlist([4i64].as_slice(), false, x.kind());
            let denom = sum.f_add_scalar(f32::MIN_POSITIVE as f64)?;
            Ok(sq.f_div(&denom)?)
        }
    }
}
