//! The BVLC corpus: prototxt files from BVLC/caffe's `examples/` and `models/`
//! (tests/fixtures/bvlc/, same relative paths; see its README.md for where
//! each came from). Every file must parse (nets as NetParameter, files with
//! "solver" in the name as SolverParameter), survive print → parse unchanged,
//! and, where it uses a legacy form, upgrade to the current one.
use std::path::{Path, PathBuf};

use caffe_tch::proto::caffe::{NetParameter, SolverParameter};
use caffe_tch::proto::{print, text, upgrade};
use prost::Message;

/// How many prototxt files the corpus holds. Update deliberately.
const EXPECTED_FILES: usize = 60;

/// Nets in the corpus that use a legacy form (V0/V1 layers, input fields, ...).
const EXPECTED_LEGACY_NETS: usize = 16;

/// Solvers that use the deprecated `solver_type` enum.
const EXPECTED_LEGACY_SOLVERS: usize = 2;

/// Files real Caffe cannot read either, with the reason. They must fail here too.
const KNOWN_BAD: &[(&str, &str)] = &[];

fn corpus_root() -> PathBuf {
    crate::common::fixture("bvlc")
}

fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            walk(&p, out);
        } else if p.extension().is_some_and(|e| e == "prototxt") {
            out.push(p);
        }
    }
}

/// Corpus files as paths relative to the corpus root, sorted.
fn corpus() -> Vec<String> {
    let root = corpus_root();
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.iter().map(|p| p.strip_prefix(&root).unwrap().display().to_string()).collect()
}

fn is_solver(rel: &str) -> bool {
    Path::new(rel).file_name().unwrap().to_string_lossy().contains("solver")
}

fn known_bad(rel: &str) -> Option<&'static str> {
    KNOWN_BAD.iter().find(|(p, _)| *p == rel).map(|(_, why)| *why)
}

fn parse<M: Message + prost::Name + Default>(rel: &str) -> Result<M, String> {
    let path = corpus_root().join(rel);
    text::read_file::<M>(&path, text::TextOptions::default()).map(|p| p.message).map_err(|e| e.to_string())
}

/// print → parse gives back the same message (compared as encoded bytes).
fn round_trip<M: Message + prost::Name + Default>(rel: &str, msg: &M) -> Result<(), String> {
    let printed = print::to_text(msg);
    let again = text::parse_str::<M>(&printed, rel, text::TextOptions::default())
        .map_err(|e| format!("printed text does not parse: {e}"))?
        .message;
    if again.encode_to_vec() != msg.encode_to_vec() {
        return Err("print -> parse changed the message".into());
    }
    Ok(())
}

#[test]
fn corpus_is_complete() {
    let files = corpus();
    assert_eq!(
        files.len(),
        EXPECTED_FILES,
        "corpus has {} prototxt files, expected {EXPECTED_FILES}:\n{}",
        files.len(),
        files.join("\n")
    );
    for (bad, _) in KNOWN_BAD {
        assert!(files.iter().any(|f| f == bad), "KNOWN_BAD lists a missing file {bad}");
    }
    let solvers = files.iter().filter(|f| is_solver(f)).count();
    assert!(solvers > 10 && solvers < files.len() - 10, "{solvers} solvers");
}

#[test]
fn every_file_parses_and_round_trips() {
    let mut failures = Vec::new();
    for rel in corpus() {
        let result = if is_solver(&rel) {
            parse::<SolverParameter>(&rel).and_then(|m| round_trip(&rel, &m))
        } else {
            parse::<NetParameter>(&rel).and_then(|m| round_trip(&rel, &m))
        };
        match (result, known_bad(&rel)) {
            (Ok(()), None) => {}
            (Err(e), None) => failures.push(format!("{rel}: {e}")),
            (Ok(()), Some(why)) => failures.push(format!("{rel}: listed as unreadable ({why}) but parsed")),
            (Err(_), Some(_)) => {}
        }
    }
    assert!(failures.is_empty(), "{} corpus failures:\n{}", failures.len(), failures.join("\n"));
}

/// Upgrades `net`, checks the result is current and that a second upgrade is a
/// no-op. Returns the steps the upgrade took.
fn check_upgrade(rel: &str, mut net: NetParameter) -> Result<Vec<&'static str>, String> {
    let needed = upgrade::net_needs_upgrade(&net);
    let report = upgrade::upgrade_net(&mut net, rel).map_err(|e| e.to_string())?;
    if needed == report.is_noop() {
        return Err(format!("net_needs_upgrade said {needed} but the upgrade did {:?}", report.steps));
    }
    if !report.warnings.is_empty() {
        return Err(format!("upgrade warnings: {:?}", report.warnings));
    }
    if !net.layers.is_empty() || !net.input.is_empty() || !net.input_dim.is_empty() || !net.input_shape.is_empty() {
        return Err("legacy fields left after the upgrade".into());
    }
    if upgrade::net_needs_upgrade(&net) {
        return Err("still needs an upgrade after upgrading".into());
    }
    let before = net.encode_to_vec();
    let again = upgrade::upgrade_net(&mut net, rel).map_err(|e| e.to_string())?;
    if !again.is_noop() || net.encode_to_vec() != before {
        return Err(format!("second upgrade was not a no-op: {:?}", again.steps));
    }
    round_trip(rel, &net).map_err(|e| format!("upgraded net: {e}"))?;
    Ok(report.steps)
}

#[test]
fn legacy_files_upgrade() {
    let mut failures = Vec::new();
    let mut legacy_nets = Vec::new();
    let mut legacy_solvers = Vec::new();
    let mut steps_seen = std::collections::BTreeSet::new();
    for rel in corpus() {
        if known_bad(&rel).is_some() {
            continue;
        }
        if is_solver(&rel) {
            let Ok(mut s) = parse::<SolverParameter>(&rel) else { continue };
            let needed = upgrade::solver_needs_upgrade(&s);
            match upgrade::upgrade_solver(&mut s, &rel) {
                Ok(report) => {
                    if needed {
                        legacy_solvers.push(rel.clone());
                    }
                    if needed == report.is_noop() || s.solver_type.is_some() {
                        failures.push(format!("{rel}: solver upgrade did {:?}", report.steps));
                    }
                    if !upgrade::upgrade_solver(&mut s, &rel).unwrap().is_noop() {
                        failures.push(format!("{rel}: second solver upgrade was not a no-op"));
                    }
                }
                Err(e) => failures.push(format!("{rel}: {e}")),
            }
            // Nets written inside the solver upgrade like file nets. (Caffe itself
            // does not upgrade these: a legacy inline net is not read by Caffe.)
            let inline = s.net_param.iter().chain(s.train_net_param.iter()).chain(s.test_net_param.iter());
            for (i, net) in inline.enumerate() {
                match check_upgrade(&rel, net.clone()) {
                    Ok(steps) if steps.is_empty() => {}
                    Ok(steps) => {
                        legacy_nets.push(format!("{rel} (inline net {i})"));
                        steps_seen.extend(steps);
                    }
                    Err(e) => failures.push(format!("{rel} (inline net {i}): {e}")),
                }
            }
        } else {
            let Ok(net) = parse::<NetParameter>(&rel) else { continue };
            match check_upgrade(&rel, net) {
                Ok(steps) if steps.is_empty() => {}
                Ok(steps) => {
                    legacy_nets.push(rel.clone());
                    steps_seen.extend(steps);
                }
                Err(e) => failures.push(format!("{rel}: {e}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} upgrade failures:\n{}", failures.len(), failures.join("\n"));
    assert_eq!(legacy_nets.len(), EXPECTED_LEGACY_NETS, "legacy nets:\n{}", legacy_nets.join("\n"));
    // Every net upgrade step except V0 (covered by tests/upgrade.rs) occurs in the corpus.
    let expected_steps: std::collections::BTreeSet<_> =
        [upgrade::STEP_DATA_TRANSFORM, upgrade::STEP_V1_TO_V2, upgrade::STEP_INPUT, upgrade::STEP_BATCH_NORM]
            .into_iter()
            .collect();
    assert_eq!(steps_seen, expected_steps);
    assert_eq!(legacy_solvers.len(), EXPECTED_LEGACY_SOLVERS, "legacy solvers:\n{}", legacy_solvers.join("\n"));
}

/// The master-era BVLC model definitions are current: nothing to upgrade.
#[test]
fn bvlc_models_are_current() {
    for rel in corpus().iter().filter(|r| r.starts_with("models/") && !is_solver(r)) {
        let net = parse::<NetParameter>(rel).unwrap();
        assert!(!upgrade::net_needs_upgrade(&net), "{rel}");
        assert!(!net.layer.is_empty(), "{rel}: no layers");
    }
}
