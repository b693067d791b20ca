//! RNN and LSTM.
use super::Graph;
use crate::export::PlanLayer;
use crate::{bail, Result};

pub fn lstm(_g: &mut Graph, _l: &PlanLayer) -> Result<()> {
    bail!("LSTM export is not written yet")
}

pub fn rnn(_g: &mut Graph, _l: &PlanLayer) -> Result<()> {
    bail!("RNN export is not written yet")
}
