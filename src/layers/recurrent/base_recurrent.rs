//! The layer RNN and LSTM share (Caffe's RecurrentLayer): the blobs, the
//! shape checks, the state carried from one forward to the next, and the time
//! loop, which runs rnn.rs's or lstm.rs's cell at each step.
use crate::Result;
use tch::Tensor;

use super::{lstm, rnn};
use crate::bail;
use crate::layers::{check_bottoms, count, Ctx, Layer, ParamDecl, SetupOut, Shape};
use crate::proto::caffe::{FillerParameter, LayerParameter};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Cell {
    Rnn,
    Lstm,
}

impl Cell {
    /// How many state blobs the cell carries (h; or h and c).
    fn num_states(self) -> usize {
        match self {
            Cell::Rnn => 1,
            Cell::Lstm => 2,
        }
    }
    /// Width of the pre-activation the input transforms produce.
    fn gate_width(self, hidden: i64) -> i64 {
        match self {
            Cell::Rnn => hidden,
            Cell::Lstm => 4 * hidden,
        }
    }
}

pub struct Recurrent {
    cell: Cell,
    hidden: i64,
    weight_filler: FillerParameter,
    bias_filler: FillerParameter,
    expose_hidden: bool,
    static_input: bool,
    timesteps: i64,
    input_dim: i64,
    static_dim: i64,
    /// The previous forward's final states (h, then c), detached.
    carried: Vec<Tensor>,
}

impl Recurrent {
    pub(super) fn new(lp: &LayerParameter, cell: Cell) -> Result<Self> {
        let p = lp.recurrent_param.clone().unwrap_or_default();
        if p.num_output() == 0 {
            bail!("recurrent_param.num_output must be positive");
        }
        Ok(Recurrent {
            cell,
            hidden: p.num_output() as i64,
            weight_filler: p.weight_filler.clone().unwrap_or_default(),
            bias_filler: p.bias_filler.clone().unwrap_or_default(),
            expose_hidden: p.expose_hidden(),
            static_input: false,
            timesteps: 0,
            input_dim: 0,
            static_dim: 0,
            carried: Vec::new(),
        })
    }

    fn num_hidden_bottoms(&self) -> usize {
        if self.expose_hidden {
            self.cell.num_states()
        } else {
            0
        }
    }

    /// Checks the bottoms' shapes (at setup and at every forward); returns N.
    fn check_shapes(&self, bottoms: &[Shape], at_setup: bool) -> Result<i64> {
        let x = &bottoms[0];
        if x.len() < 3 {
            bail!("bottom[0] (x) must be T×N×… with at least 3 axes (the input transform works on axis 2), got {x:?}");
        }
        let (t, n) = (x[0], x[1]);
        if !at_setup {
            if t != self.timesteps {
                bail!("input number of timesteps changed: {t}, set up for {}", self.timesteps);
            }
            let d = count(x, 2, x.len());
            if d != self.input_dim {
                bail!("bottom[0] (x) has {d} features per step, set up for {}", self.input_dim);
            }
        }
        let cont = &bottoms[1];
        if cont.len() != 2 || cont[0] != t || cont[1] != n {
            bail!("bottom[1] (cont) must be T×N = [{t}, {n}] to match x {x:?}, got {cont:?}");
        }
        let mut next = 2;
        if self.static_input {
            let s = &bottoms[2];
            if s.len() < 2 || s[0] != n {
                bail!("bottom[2] (x_static) must be N×… with N = {n} and at least 2 axes, got {s:?}");
            }
            if !at_setup && count(s, 1, s.len()) != self.static_dim {
                bail!("bottom[2] (x_static) has {} features, set up for {}", count(s, 1, s.len()), self.static_dim);
            }
            next = 3;
        }
        let want = vec![1, n, self.hidden];
        for (j, b) in bottoms[next..].iter().enumerate() {
            if *b != want {
                let name = if j == 0 { "h_0" } else { "c_0" };
                bail!(
                    "bottom[{}] ({name}) shape must match the hidden state 1×N×num_output {want:?}, got {b:?}",
                    next + j
                );
            }
        }
        Ok(n)
    }

    /// The initial states as N×H tensors: exposed bottoms, or the carried
    /// state of the previous forward, or zeros.
    fn initial_states(&self, bottoms: &[Tensor], n: i64, like: &Tensor) -> Result<Vec<Tensor>> {
        let k = self.cell.num_states();
        if self.expose_hidden {
            let first = 2 + self.static_input as usize;
            return bottoms[first..first + k]
                .iter()
                .map(|b| Ok(b.detach().f_reshape([n, self.hidden])?.f_to_kind(like.kind())?))
                .collect();
        }
        let fits = self.carried.len() == k && self.carried.iter().all(|c| c.size() == [n, self.hidden]);
        Ok((0..k)
            .map(|i| {
                if fits {
                    self.carried[i].to_device(like.device()).to_kind(like.kind())
                } else {
                    Tensor::zeros([n, self.hidden], (like.kind(), like.device()))
                }
            })
            .collect())
    }
}

impl Layer for Recurrent {
    fn setup(&mut self, bottoms: &[Shape]) -> Result<SetupOut> {
        let min = 2 + self.num_hidden_bottoms();
        check_bottoms(bottoms, min, min + 1)?;
        self.static_input = bottoms.len() > min;
        let n = self.check_shapes(bottoms, true)?;
        let x = &bottoms[0];
        self.timesteps = x[0];
        self.input_dim = count(x, 2, x.len());
        if self.static_input {
            self.static_dim = count(&bottoms[2], 1, bottoms[2].len());
        }
        self.carried.clear();

        let h = self.hidden;
        let g = self.cell.gate_width(h);
        let w = |shape: Shape| ParamDecl::new(shape, self.weight_filler.clone());
        let b = |shape: Shape| ParamDecl::new(shape, self.bias_filler.clone());
        let mut params = vec![w(vec![g, self.input_dim]), b(vec![g])];
        if self.static_input {
            params.push(w(vec![g, self.static_dim]));
        }
        params.push(w(vec![g, h]));
        if self.cell == Cell::Rnn {
            params.push(w(vec![h, h]));
            params.push(b(vec![h]));
        }

        let mut tops = vec![vec![self.timesteps, n, h]];
        for _ in 0..self.num_hidden_bottoms() {
            tops.push(vec![1, n, h]);
        }
        Ok(SetupOut { tops, params })
    }

    fn forward(&mut self, _ctx: &Ctx, bottoms: &[Tensor], params: &[Tensor]) -> Result<Vec<Tensor>> {
        let shapes: Vec<Shape> = bottoms.iter().map(|b| b.size()).collect();
        let expected = 2 + self.static_input as usize + self.num_hidden_bottoms();
        check_bottoms(&shapes, expected, expected)?;
        let n = self.check_shapes(&shapes, false)?;
        let (t_len, h) = (self.timesteps, self.hidden);
        let g = self.cell.gate_width(h);
        let x = &bottoms[0];
        let cont = bottoms[1].detach().f_to_kind(x.kind())?;

        let (w_x, b_x) = (&params[0], &params[1]);
        let mut next = 2;
        // Input transforms for all steps at once: W·x_t + b (+ W_static·x_static).
        let mut x_part = x.f_reshape([t_len, n, self.input_dim])?.f_linear(w_x, Some(b_x))?;
        if self.static_input {
            let s = bottoms[2].f_reshape([n, self.static_dim])?.f_linear::<&Tensor>(&params[next], None)?;
            x_part = x_part.f_add(&s.f_reshape([1, n, g])?)?;
            next += 1;
        }
        let w_h = &params[next];

        let states = self.initial_states(bottoms, n, x)?;
        let mut h_prev = states[0].shallow_clone();
        let mut c_prev = states.get(1).map(|c| c.shallow_clone());
        let caffe_forget = self.cell == Cell::Lstm && !lstm::is_binary(&cont)?;
        let mut hs = Vec::with_capacity(t_len as usize);
        for t in 0..t_len {
            let cont_t = cont.get(t).f_reshape([n, 1])?;
            let pre = x_part.get(t).f_add(&h_prev.f_mul(&cont_t)?.f_linear::<&Tensor>(w_h, None)?)?;
            match &c_prev {
                None => h_prev = rnn::step(&pre)?,
                Some(c) => {
                    let (c_t, h_t) = lstm::lstm_unit(c, &pre, &cont_t, caffe_forget)?;
                    c_prev = Some(c_t);
                    h_prev = h_t;
                }
            }
            hs.push(h_prev.shallow_clone());
        }
        let hs = Tensor::f_stack(&hs, 0)?;
        let out = match self.cell {
            Cell::Rnn => rnn::output(&hs, &params[next + 1], &params[next + 2])?,
            Cell::Lstm => hs,
        };

        let finals: Vec<Tensor> = std::iter::once(h_prev).chain(c_prev).map(|s| s.detach()).collect();
        let mut tops = vec![out];
        if self.expose_hidden {
            for s in &finals {
                tops.push(s.f_reshape([1, n, h])?);
            }
        } else {
            self.carried = finals;
        }
        Ok(tops)
    }
}
