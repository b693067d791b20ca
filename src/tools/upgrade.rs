//! `caffe upgrade_net_proto_text|upgrade_net_proto_binary|upgrade_solver_proto_text`.
use std::path::Path;

use crate::info;
use crate::proto::caffe::{NetParameter, SolverParameter};
use crate::proto::{binary, print, text, upgrade};
use crate::Result;

/// Reads a net prototxt, upgrades it to the current format and writes it as text.
pub fn net_text(input: &Path, output: &Path, opts: text::TextOptions) -> Result<()> {
    let mut net = text::read_file_nonempty::<NetParameter>(input, opts)?.message;
    let report = upgrade::upgrade_net(&mut net, &input.display().to_string())?;
    log_report(input, &report);
    crate::util::write_atomic(output, print::to_text(&net).as_bytes())?;
    info!("upgrade_net_proto_text.cpp:49", "Wrote upgraded NetParameter text proto to {}", output.display());
    Ok(())
}

/// Reads a binary net (e.g. a .caffemodel), upgrades it and writes it in binary.
pub fn net_binary(input: &Path, output: &Path) -> Result<()> {
    let mut net: NetParameter = binary::read_message(input)?;
    let report = upgrade::upgrade_net(&mut net, &input.display().to_string())?;
    log_report(input, &report);
    binary::write_message(output, &net)?;
    info!("upgrade_net_proto_binary.cpp:48", "Wrote upgraded NetParameter binary proto to {}", output.display());
    Ok(())
}

/// Reads a solver prototxt, upgrades it and writes it as text.
pub fn solver_text(input: &Path, output: &Path, opts: text::TextOptions) -> Result<()> {
    let mut solver = text::read_file_nonempty::<SolverParameter>(input, opts)?.message;
    let report = upgrade::upgrade_solver(&mut solver, &input.display().to_string())?;
    log_report(input, &report);
    crate::util::write_atomic(output, print::to_text(&solver).as_bytes())?;
    info!("upgrade_solver_proto_text.cpp:44", "Wrote upgraded SolverParameter text proto to {}", output.display());
    Ok(())
}

fn log_report(input: &Path, report: &upgrade::UpgradeReport) {
    if report.steps.is_empty() {
        info!("upgrade_proto.cpp:67", "{}: already in the current format; no upgrade needed", input.display());
    } else {
        info!("upgrade_proto.cpp:67", "{}: {}", input.display(), report.describe());
    }
}
