//! InnerProduct: the fully connected layer, y = x·Wᵀ + b over the axes from `axis` on.
use crate::Result;
use tch::Tensor;

use crate::bail;
use crate::layers::registry::{family_of, LayerInfo};
use crate::layers::{canonical_axis, check_bottoms, count, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{InnerProductParameter, LayerParameter};

pub fn register(r: &mut Vec<LayerInfo>) {
    r.push(LayerInfo {
        type_name: "InnerProduct",
        family: family_of(file!()),
        params: "num_output, bias_term, weight_filler, bias_filler, axis, transpose",
        tests: "parity (lenet, cifar10, resnet_small), gradient check (layers_common: inner_product_*)",
        create: |p| Ok(Box::new(InnerProduct::new(p)?)),
    });
}

pub struct InnerProduct {
    p: InnerProductParameter,
    axis: usize,
}

impl InnerProduct {
    fn new(lp: &LayerParameter) -> Result<Self> {
        let p = lp.inner_product_param.clone().unwrap_or_default();
        if p.num_output.is_none() {
            bail!("inner_product_param.num_output is required");
        }
        Ok(InnerProduct { p, axis: 1 })
    }
}

/// How a TEST-phase CPU forward computes x·Wᵀ + b. A training step always
/// uses x·Wᵀ (`linear`): MKL splits the other forms' sums differently at
/// different thread counts, and a step must not depend on them (one process at
/// 2 threads must equal two ranks at 1, bit for bit). Chosen from
/// `benches/inner_product_gemm.py`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InferenceGemm {
    /// x·Wᵀ (libtorch's linear): large batches, and layers whose weights
    /// fit in cache.
    Linear,
    /// W·xᵀ transposed back: a handful of rows against many outputs, where
    /// MKL's x·Wᵀ runs far below the bandwidth the weights need and W·xᵀ
    /// streams W once.
    Transposed,
    /// oneDNN's inner product on the plain weights: weights of 8 MB and more,
    /// larger than the caches (CaffeNet's fc6, fc7 and fc8, ResNet's fc1000),
    /// at any batch, where it streams them faster than either MKL form (at
    /// one row MKL's GEMV reads them at about half the bandwidth).
    OneDnn,
}

/// The fewest weights (elements) for which oneDNN's inner product runs.
const ONEDNN_MIN_WEIGHTS: i64 = 2_000_000;

fn inference_gemm(rows: i64, inputs: i64, outputs: i64) -> InferenceGemm {
    if inputs * outputs >= ONEDNN_MIN_WEIGHTS {
        InferenceGemm::OneDnn
    } else if (4..=32).contains(&rows) && outputs >= 500 {
        InferenceGemm::Transposed
    } else {
        InferenceGemm::Linear
    }
}

impl Layer for InnerProduct {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        check_bottoms(bottoms, 1, 1)?;
        let s = &bottoms[0];
        self.axis = canonical_axis(self.p.axis(), s.len())?;
        let k = count(s, self.axis, s.len());
        let n = self.p.num_output() as i64;
        let mut top = s[..self.axis].to_vec();
        top.push(n);
        let wshape = if self.p.transpose() { vec![k, n] } else { vec![n, k] };
        let mut params = vec![ParamDecl::new(wshape, self.p.weight_filler.clone().unwrap_or_default())];
        if self.p.bias_term() {
            params.push(ParamDecl::new(vec![n], self.p.bias_filler.clone().unwrap_or_default()));
        }
        Ok(SetupOut { tops: vec![top], params })
    }

    fn forward(&mut self, ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let x = &bottoms[0];
        let s = x.size();
        let m = count(&s, 0, self.axis);
        let x2 = crate::layers::layout::reshape(x, &[m, count(&s, self.axis, s.len())])?;
        let w = &params[0];
        let y = if self.p.transpose() {
            match params.get(1) {
                Some(b) => b.f_addmm(&x2, w)?,
                None => x2.f_matmul(w)?,
            }
        } else {
            let cpu_float_inference = !ctx.train() && x2.device() == tch::Device::Cpu && x2.kind() == tch::Kind::Float;
            let form = if cpu_float_inference {
                inference_gemm(m, x2.size()[1], self.p.num_output() as i64)
            } else {
                InferenceGemm::Linear
            };
            let onednn = match form {
                InferenceGemm::OneDnn => crate::layers::onednn::linear(&x2, w, params.get(1)),
                _ => None,
            };
            match (onednn, form) {
                (Some(y), _) => y,
                (None, InferenceGemm::Transposed) => {
                    let y = match params.get(1) {
                        Some(b) => b.f_unsqueeze(1)?.f_addmm(w, &x2.f_tr()?)?,
                        None => w.f_matmul(&x2.f_tr()?)?,
                    };
                    y.f_tr()?.f_contiguous()?
                }
                (None, _) => x2.f_linear(w, params.get(1))?,
            }
        };
        let mut top = s[..self.axis].to_vec();
        top.push(self.p.num_output() as i64);
        Ok(vec![y.f_reshape(top.as_slice())?])
    }
}
