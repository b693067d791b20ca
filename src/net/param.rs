//! A learnable blob (weights or bias) with its diff, as the solver sees it.
use tch::Tensor;

/// One learnable blob, as the solver sees it (Caffe's `learnable_params`).
pub struct Param {
    /// The value; a leaf that requires grad when `lr_mult != 0`.
    pub data: Tensor,
    /// The gradient accumulated by `backward` (Caffe's diff), read through
    /// [`Param::diff`] / [`Param::diff_mut`]. Undefined means zero: a cleared
    /// diff holds no storage, so the next backward keeps autograd's gradient
    /// tensor as the diff and a step holds one gradient per weight, not two
    /// (CaffeNet: 233 MB less at the peak); nets that only run forward never
    /// allocate one.
    diff: Tensor,
    /// Keep the diff's storage across clears (zeroed in place), for readers
    /// that view its memory (pycaffe's `net.params[x][i].diff`).
    keep_storage: bool,
    pub lr_mult: f32,
    pub decay_mult: f32,
    /// The layer that owns it, and its index among that layer's blobs.
    pub layer: String,
    pub index: usize,
}

impl Param {
    pub(super) fn new(data: Tensor, lr_mult: f32, decay_mult: f32, layer: &str, index: usize) -> Self {
        Param { data, diff: Tensor::new(), keep_storage: false, lr_mult, decay_mult, layer: layer.to_string(), index }
    }

    /// "layer[index]", for messages.
    pub fn display(&self) -> String {
        format!("{}[{}]", self.layer, self.index)
    }

    /// Sets the diff to zero (Caffe's ClearParamDiffs): in place when views
    /// of its memory must stay valid, else by letting its storage go.
    pub(super) fn clear(&mut self) -> Result<(), tch::TchError> {
        if self.keep_storage && self.diff.defined() {
            tch::no_grad(|| self.diff.f_zero_().map(drop))?;
        } else {
            self.diff = Tensor::new();
        }
        Ok(())
    }

    /// From now on the diff is one tensor that clears and backward update in
    /// place, so a view of its memory stays valid (see [`Param::diff_storage`]).
    pub fn keep_diff_storage(&mut self) {
        self.keep_storage = true;
        self.settle();
    }

    /// Whether the diff keeps one storage across clears ([`Param::keep_diff_storage`]).
    pub fn keeps_diff_storage(&self) -> bool {
        self.keep_storage
    }

    /// The address of the diff's data; None when cleared.
    pub fn diff_ptr(&self) -> Option<usize> {
        self.diff.defined().then(|| self.diff.data_ptr() as usize)
    }

    /// Makes `diff` the diff (None clears it), for a recorded update that
    /// wrote the update into a tensor of its own (`solver::recorded_update`).
    pub fn set_diff(&mut self, diff: Option<Tensor>) {
        self.diff = diff.unwrap_or_default();
    }

    /// The diff tensor when one is held (None when cleared).
    pub(super) fn diff_if_defined(&self) -> Option<Tensor> {
        self.diff.defined().then(|| self.diff.shallow_clone())
    }

    /// Gives the diff storage of its own if it shares `other`'s (a gradient
    /// a CUDA graph is about to rewrite).
    pub(super) fn detach_diff_from(&mut self, other: &Tensor) -> Result<(), tch::TchError> {
        if self.diff.defined() && self.diff.data_ptr() == other.data_ptr() {
            self.diff = self.diff.f_detach_copy()?;
        }
        Ok(())
    }

    /// The diff tensor itself (shared storage, not a copy); materialised
    /// first. With [`Param::keep_diff_storage`] its memory stays the diff's.
    pub fn diff_storage(&mut self) -> Tensor {
        self.settle();
        self.diff.shallow_clone()
    }

    /// The diff (zeros when cleared).
    pub fn diff(&self) -> Tensor {
        if self.diff.defined() {
            self.diff.shallow_clone()
        } else {
            self.zeros()
        }
    }

    /// The diff for in-place updates (a cleared one is materialised first).
    pub fn diff_mut(&mut self) -> &mut Tensor {
        self.settle();
        &mut self.diff
    }

    /// Adds a gradient into the diff (the first one after a clear becomes it).
    /// A failed add (a shape or device mismatch) is an error: dropping it would
    /// train on a wrong gradient without a word.
    pub fn accumulate(&mut self, grad: &Tensor) -> Result<(), tch::TchError> {
        if !grad.defined() {
            return Ok(());
        }
        tch::no_grad(|| {
            if self.diff.defined() {
                let _ = self.diff.f_add_(grad)?; // the returned alias of self.diff is not needed
            } else if grad.size() == self.data.size() {
                // Copied only where it is not in Caffe's layout (a channels-last conv weight's).
                self.diff = grad.f_contiguous()?;
            } else {
                let mut d = self.zeros();
                let _ = d.f_add_(grad)?;
                self.diff = d;
            }
            Ok(())
        })
    }

    /// Materialises a cleared diff as zeros (for readers outside backward).
    pub fn settle(&mut self) {
        if !self.diff.defined() {
            self.diff = self.zeros();
        }
    }

    fn zeros(&self) -> Tensor {
        Tensor::zeros(self.data.size().as_slice(), (self.data.kind(), self.data.device()))
    }
}
