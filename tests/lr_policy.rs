//! Learning-rate policies at their breakpoints: Caffe's seven (checked against
//! the rates BVLC Caffe logged where we have them) and the cyclical policies of
//! the paper author's fork (checked against the rates and momenta in the fork's
//! published training logs, lnsmith54/hyperParam1 Cifar/results).
use caffe_tch::proto::caffe::SolverParameter;
use caffe_tch::proto::text::{parse_str, TextOptions};
use caffe_tch::solver::lr_policy::LrPolicy;

fn policy(text: &str) -> LrPolicy {
    let p = parse_str::<SolverParameter>(text, "solver", TextOptions::default()).unwrap().message;
    LrPolicy::from_param(&p).unwrap_or_else(|e| panic!("{text}: {e}"))
}

fn policy_error(text: &str) -> String {
    let p = parse_str::<SolverParameter>(text, "solver", TextOptions::default()).unwrap().message;
    LrPolicy::from_param(&p).expect_err(text).to_string()
}

fn rate(p: &LrPolicy, iter: i64) -> f64 {
    p.rate(iter, &mut 0) as f64
}

/// |a − b| ≤ rel·|b| (with an absolute floor for zero).
fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-12)
}

#[track_caller]
fn assert_rate(p: &LrPolicy, iter: i64, want: f64, rel: f64) {
    let got = rate(p, iter);
    assert!(close(got, want, rel), "{} at iteration {iter}: {got} ≠ {want}", p.name);
}

#[test]
fn fixed() {
    let p = policy(r#"lr_policy: "fixed" base_lr: 0.01"#);
    for it in [0, 1, 1000, 1_000_000] {
        assert_rate(&p, it, 0.01, 1e-7);
    }
}

#[test]
fn step_moves_current_step() {
    let p = policy(r#"lr_policy: "step" base_lr: 0.1 gamma: 0.1 stepsize: 10"#);
    let mut step = 0;
    for (it, want, want_step) in
        [(0, 0.1, 0), (9, 0.1, 0), (10, 0.01, 1), (19, 0.01, 1), (20, 0.001, 2), (35, 0.0001, 3)]
    {
        let got = p.rate(it, &mut step) as f64;
        assert!(close(got, want, 1e-6), "step at {it}: {got}");
        assert_eq!(step, want_step);
    }
}

#[test]
fn exp() {
    let p = policy(r#"lr_policy: "exp" base_lr: 0.1 gamma: 0.9"#);
    assert_rate(&p, 0, 0.1, 1e-7);
    assert_rate(&p, 1, 0.09, 1e-6);
    assert_rate(&p, 2, 0.081, 1e-6);
    assert_rate(&p, 100, 0.1 * 0.9f64.powi(100), 1e-5);
}

/// Caffe's LeNet solver: the rates in fixtures/lenet/sgd20/loss.txt (the float
/// Caffe used, printed with 9 digits) and in lenet_run/train.log.
#[test]
fn inv_matches_caffe() {
    let p = policy(r#"lr_policy: "inv" base_lr: 0.01 gamma: 0.0001 power: 0.75"#);
    let caffe = [
        0.00999999978,
        0.00999924984,
        0.00999850004,
        0.00999775037,
        0.00999700083,
        0.00999625142,
        0.00999550214,
        0.00999475299,
        0.00999400397,
        0.00999325509,
        0.00999250633,
        0.00999175771,
        0.00999100922,
        0.00999026085,
        0.00998951262,
        0.00998876452,
        0.00998801655,
        0.00998726871,
        0.009986521,
        0.00998577343,
    ];
    for (it, want) in caffe.iter().enumerate() {
        assert_rate(&p, it as i64, *want, 2e-7);
    }
    // train.log: "Iteration 100, lr = 0.00992565", "5000, lr = 0.00737788", "9900, lr = 0.00596843".
    assert_rate(&p, 100, 0.00992565, 1e-6);
    assert_rate(&p, 5000, 0.00737788, 1e-6);
    assert_rate(&p, 9900, 0.00596843, 1e-6);
}

#[test]
fn multistep_advances_one_step_per_call() {
    let p = policy(r#"lr_policy: "multistep" base_lr: 1 gamma: 0.5 stepvalue: 5 stepvalue: 8"#);
    let mut step = 0;
    for (it, want) in [(0, 1.0), (4, 1.0), (5, 0.5), (7, 0.5), (8, 0.25), (100, 0.25)] {
        assert!(close(p.rate(it, &mut step) as f64, want, 1e-7), "multistep at {it}");
    }
    assert_eq!(step, 2);
    // As in Caffe, a call moves at most one step: a solver resumed past both
    // stepvalues with current_step 0 catches up over two iterations.
    let mut step = 0;
    assert!(close(p.rate(100, &mut step) as f64, 0.5, 1e-7));
    assert!(close(p.rate(101, &mut step) as f64, 0.25, 1e-7));
}

#[test]
fn poly() {
    let p = policy(r#"lr_policy: "poly" base_lr: 0.1 power: 2 max_iter: 100"#);
    assert_rate(&p, 0, 0.1, 1e-7);
    assert_rate(&p, 50, 0.025, 1e-6);
    assert_rate(&p, 90, 0.001, 1e-5);
    assert_eq!(rate(&p, 100), 0.0);
}

#[test]
fn sigmoid() {
    let p = policy(r#"lr_policy: "sigmoid" base_lr: 0.1 gamma: 0.1 stepsize: 50"#);
    assert_rate(&p, 50, 0.05, 1e-6);
    assert_rate(&p, 0, 0.1 / (1.0 + 5f64.exp()), 1e-6);
    assert_rate(&p, 100, 0.1 / (1.0 + (-5f64).exp()), 1e-6);
}

#[test]
fn triangular() {
    let p = policy(r#"lr_policy: "triangular" base_lr: 0.1 max_lr: 1.0 stepsize: 10"#);
    for (it, want) in [(0, 0.1), (5, 0.55), (10, 1.0), (15, 0.55), (20, 0.1), (25, 0.55), (30, 1.0), (40, 0.1)] {
        assert_rate(&p, it, want, 1e-6);
    }
}

#[test]
fn triangular2_halves_each_cycle() {
    let p = policy(r#"lr_policy: "triangular2" base_lr: 0.1 max_lr: 1.0 stepsize: 10"#);
    for (it, want) in [(0, 0.1), (10, 1.0), (20, 0.1), (30, 0.55), (40, 0.1), (50, 0.325), (45, 0.2125)] {
        assert_rate(&p, it, want, 1e-6);
    }
}

/// The fork's run "C100Res1CycLR.1001.2CM0.95.85": base_lr 0.1, max_lr 1.2,
/// stepsize 3417, momentum 0.95, cyclical_momentum 0.85 and 3417.
#[test]
fn one_cycle_matches_the_forks_log() {
    let p = policy(
        r#"lr_policy: "1cycle" base_lr: 0.1 max_lr: 1.2 stepsize: 3417 max_iter: 7080
           momentum: 0.95 cyclical_momentum: 0.85 cyclical_momentum: 3417"#,
    );
    let log = [
        (0, 0.1, 0.95),
        (100, 0.132192, 0.947073),
        (1000, 0.42192, 0.920735),
        (5500, 0.468481, 0.91096),
        (6100, 0.25777, 0.928519),
        (6800, 0.0119403, 0.949005),
        (6900, 0.0001, 0.949034),
        (7000, 0.0001, 0.947571),
    ];
    for (it, lr, m) in log {
        assert_rate(&p, it, lr, 2e-5);
        let got = p.momentum(it, 0.95) as f64;
        assert!(close(got, m, 2e-6), "momentum at {it}: {got} ≠ {m}");
    }
    // The peak and the ends.
    assert_rate(&p, 3417, 1.2, 1e-6);
    assert!(close(p.momentum(3417, 0.95) as f64, 0.85, 1e-6));
    assert!(close(p.momentum(6834, 0.95) as f64, 0.95, 1e-6));
}

/// The fork's run "C100CycLR.0020.02CM0.95.8": base_lr 0.002, max_lr 0.02,
/// stepsize 2246, cyclical_momentum 0.8 and 2246.
#[test]
fn one_cycle_matches_the_forks_second_log() {
    let p = policy(
        r#"lr_policy: "1cycle" base_lr: 0.002 max_lr: 0.02 stepsize: 2246 max_iter: 4882
           momentum: 0.95 cyclical_momentum: 0.8 cyclical_momentum: 2246"#,
    );
    for (it, lr, m) in
        [(3000, 0.0132858, 0.850356), (4400, 0.000819235, 0.943856), (4600, 2e-06, 0.946394), (4800, 2e-06, 0.939715)]
    {
        assert_rate(&p, it, lr, 2e-5);
        let got = p.momentum(it, 0.95) as f64;
        assert!(close(got, m, 2e-6), "momentum at {it}: {got} ≠ {m}");
    }
}

/// Two momenta below 1: cycled between them with the lr's stepsize.
#[test]
fn one_cycle_with_two_momenta() {
    let p = policy(
        r#"lr_policy: "1cycle" base_lr: 0.1 max_lr: 1 stepsize: 100 max_iter: 250
           momentum: 0.9 cyclical_momentum: 0.95 cyclical_momentum: 0.85"#,
    );
    for (it, m) in [(0, 0.95), (50, 0.9), (100, 0.85), (150, 0.9), (200, 0.95)] {
        assert!(close(p.momentum(it, 0.9) as f64, m, 1e-6), "momentum at {it}");
    }
    // Without cyclical_momentum the solver's momentum stands.
    let plain = policy(r#"lr_policy: "1cycle" base_lr: 0.1 max_lr: 1 stepsize: 100"#);
    assert_eq!(plain.momentum(50, 0.9), 0.9);
}

#[test]
fn policy_errors_name_what_is_missing() {
    assert!(policy_error(r#"base_lr: 0.1"#).contains("lr_policy is not set"));
    let e = policy_error(r#"lr_policy: "cosine" base_lr: 0.1"#);
    assert!(e.contains("Unknown learning rate policy: cosine") && e.contains("1cycle"), "{e}");
    assert!(policy_error(r#"lr_policy: "step" base_lr: 0.1 gamma: 0.1"#).contains("needs stepsize"));
    assert!(policy_error(r#"lr_policy: "step" base_lr: 0.1 gamma: 0.1 stepsize: 0"#).contains("stepsize must be > 0"));
    assert!(policy_error(r#"lr_policy: "inv" base_lr: 0.1 gamma: 0.1"#).contains("needs power"));
    assert!(policy_error(r#"lr_policy: "exp" base_lr: 0.1 gamma: -1"#).contains("gamma must be ≥ 0"));
    assert!(policy_error(r#"lr_policy: "triangular" base_lr: 0.1 stepsize: 5"#).contains("needs max_lr"));
    assert!(policy_error(r#"lr_policy: "poly" base_lr: 0.1 power: 1"#).contains("max_iter > 0"));
    let e = policy_error(r#"lr_policy: "inv" base_lr: 0.1 gamma: 0.1 power: 1 cyclical_momentum: 0.8"#);
    assert!(e.contains("only used by the cyclical"), "{e}");
}
