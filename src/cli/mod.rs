//! The `caffe` command line: Caffe's sub-commands and flags, parsed and run.
//! The `caffe` binary calls [`main`], and so does the Python module
//! (`python -m caffe._cli`), which the binary runs itself under for nets with
//! Python layers (`python.rs`): the same code, logs and exit codes either way.
//!
//! Accepts Caffe's gflags syntax (`-solver x`, `-solver=x`) as well as GNU
//! (`--solver x`, `--solver=x`).
use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::proto::text::TextOptions;
use crate::{info, tools, Error, Result};

mod python;

/// Who runs the command line.
pub enum Host {
    /// The `caffe` binary: no interpreter; nets with Python layers make it
    /// run the command again under Python.
    Binary,
    /// The Python module, which builds Python layers itself; `interpreter`
    /// (its `sys.executable`) starts the ranks of `-ranks N`.
    Python { interpreter: OsString },
}

impl Host {
    /// The program and leading arguments that run this command line again.
    fn relaunch(&self) -> Result<Vec<OsString>> {
        match self {
            Host::Binary => {
                let exe =
                    std::env::current_exe().map_err(|e| Error::invalid(format!("cannot find this executable: {e}")))?;
                Ok(vec![exe.into_os_string()])
            }
            Host::Python { interpreter } => Ok(vec![interpreter.clone(), "-m".into(), "caffe._cli".into()]),
        }
    }
}

#[derive(Parser, Debug)]
#[command(name = "caffe", version, about = "Caffe on libtorch: train, test and time Caffe nets unchanged")]
struct Cli {
    /// Skip unknown fields and enum values in prototxt files with a warning, instead of failing.
    #[arg(long, global = true)]
    lenient: bool,
    /// The most memory a net's blobs and parameters may plan to take (e.g. 512M, 4G); the machine's memory by default.
    #[arg(long = "max_memory", global = true)]
    max_memory: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train or fine-tune a model from a solver prototxt.
    Train(TrainArgs),
    /// Score a model over a number of batches.
    Test(TestArgs),
    /// Benchmark a model's forward and backward passes, per layer.
    Time(TimeArgs),
    /// Show the libtorch build and the devices it sees.
    #[command(name = "device_query")]
    DeviceQuery(GpuArg),
    /// Run one forward pass and write blobs as .npy files.
    Forward(ForwardArgs),
    /// Export a net and its weights to ONNX, PyTorch (model.py) or safetensors.
    Export(ExportArgs),
    /// Parse, upgrade and summarise prototxt nets (and solvers).
    Summarize(SummarizeArgs),
    /// Upgrade a V0/V1 net prototxt to the current format.
    #[command(name = "upgrade_net_proto_text")]
    UpgradeNetProtoText(InOut),
    /// Upgrade a V0/V1 binary net (e.g. a .caffemodel) to the current format.
    #[command(name = "upgrade_net_proto_binary")]
    UpgradeNetProtoBinary(InOut),
    /// Upgrade a solver prototxt (solver_type enum → type string).
    #[command(name = "upgrade_solver_proto_text")]
    UpgradeSolverProtoText(InOut),
    /// Convert MNIST IDX files into an LMDB/LevelDB of Datum.
    #[command(name = "convert_mnist_data", disable_help_flag = true)]
    ConvertMnistData(Passthrough),
    /// Pair MNIST images at random into a DB of 2-channel Datum (Caffe's siamese example).
    #[command(name = "convert_mnist_siamese_data", disable_help_flag = true)]
    ConvertMnistSiameseData(Passthrough),
    /// Convert CIFAR-10's binary batches into train and test DBs of Datum (Caffe's CIFAR-10 example).
    #[command(name = "convert_cifar_data", disable_help_flag = true)]
    ConvertCifarData(Passthrough),
    /// Convert a list of images into an LMDB/LevelDB of Datum.
    #[command(name = "convert_imageset", disable_help_flag = true)]
    ConvertImageset(Passthrough),
    /// Convert images and their box annotations (VOC XML) into an LMDB of AnnotatedDatum (SSD).
    #[command(name = "convert_annoset", disable_help_flag = true)]
    ConvertAnnoset(Passthrough),
    /// Write the height and width of listed images (SSD's name_size_file).
    #[command(name = "get_image_size", disable_help_flag = true)]
    GetImageSize(Passthrough),
    /// Compute the mean image of a Datum DB into a .binaryproto.
    #[command(name = "compute_image_mean", disable_help_flag = true)]
    ComputeImageMean(Passthrough),
    /// Write a net's blobs for a DB's records into new DBs.
    #[command(name = "extract_features", disable_help_flag = true)]
    ExtractFeatures(Passthrough),
    /// Fetch MNIST (or Fashion-MNIST offline) and convert it to LMDB.
    #[command(disable_help_flag = true)]
    Data(Passthrough),
    /// Plot curves from Caffe-format training logs.
    #[command(disable_help_flag = true)]
    Plot(Passthrough),
    /// Split a Caffe-format log into .train/.test CSV files like parse_log.py.
    #[command(name = "parse_log", disable_help_flag = true)]
    ParseLog(Passthrough),
}

#[derive(Args, Debug)]
struct GpuArg {
    /// The GPU to describe (an id, or `all`); the CPU when absent.
    #[arg(long)]
    gpu: Option<String>,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// The solver definition (a SolverParameter prototxt).
    #[arg(long)]
    solver: Option<PathBuf>,
    /// Comma-separated .caffemodel (or .caffemodel.h5) files to initialise from; not with -snapshot.
    #[arg(long)]
    weights: Option<String>,
    /// A .solverstate (or .solverstate.h5) to resume training from.
    #[arg(long)]
    snapshot: Option<PathBuf>,
    /// The GPUs to train on: one id, or several (`0,1`, `all`) for one rank per device over NCCL; the CPU when absent or empty.
    #[arg(long)]
    gpu: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    stage: Option<String>,
    /// What SIGINT does: stop (snapshot first if the solver asks for it), snapshot, or none.
    #[arg(long = "sigint_effect", default_value = "stop")]
    sigint_effect: String,
    /// What SIGHUP does: snapshot, stop, or none.
    #[arg(long = "sighup_effect", default_value = "snapshot")]
    sighup_effect: String,
    /// Data-parallel on this machine: start N ranks of this command (Gloo on loopback) and wait for them.
    #[arg(long)]
    ranks: Option<usize>,
    /// Seconds a data-parallel rank waits for the others (rendezvous, each collective) before failing.
    #[arg(long = "dist_timeout", default_value_t = 300)]
    dist_timeout: u64,
    /// Record the training pass (forward and backward after the data layers) in a CUDA graph and replay it.
    #[arg(long = "cuda_graph")]
    cuda_graph: bool,
}

#[derive(Args, Debug)]
struct TestArgs {
    /// The net to score (a NetParameter prototxt; its TEST phase is built).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated trained weights (.caffemodel or .caffemodel.h5).
    #[arg(long)]
    weights: Option<String>,
    /// How many batches to score.
    #[arg(long, default_value_t = 50)]
    iterations: i64,
    /// The GPU to run on; the CPU when absent or empty.
    #[arg(long)]
    gpu: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    stage: Option<String>,
    /// The solver iteration seen by DropIn layers, e.g. the snapshot's (default: fully grown).
    #[arg(long)]
    iteration: Option<i64>,
}

#[derive(Args, Debug)]
struct TimeArgs {
    /// The net to time (a NetParameter prototxt).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated weights to load first (optional: timing does not need them).
    #[arg(long)]
    weights: Option<String>,
    /// How many forward-backward rounds to average over.
    #[arg(long, default_value_t = 50)]
    iterations: i64,
    /// Which phase of the net to build: TRAIN or TEST.
    #[arg(long, default_value = "TRAIN")]
    phase: String,
    /// The GPU to run on; the CPU when absent or empty.
    #[arg(long)]
    gpu: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    stage: Option<String>,
    /// Time the forward-backward as a CUDA graph's replay (see caffe train -cuda_graph).
    #[arg(long = "cuda_graph")]
    cuda_graph: bool,
}

#[derive(Args, Debug)]
struct ForwardArgs {
    /// The net to run (a NetParameter prototxt).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated trained weights (.caffemodel or .caffemodel.h5).
    #[arg(long)]
    weights: Option<String>,
    /// An input blob's value: NAME=file.npy; repeat for several inputs.
    #[arg(long)]
    input: Vec<String>,
    /// Which phase of the net to build: TRAIN or TEST.
    #[arg(long, default_value = "TEST")]
    phase: String,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    stage: Option<String>,
    /// The solver iteration seen by DropIn layers (default: fully grown).
    #[arg(long)]
    iteration: Option<i64>,
    /// Comma-separated blob names to write, or `all`; the net's outputs by default.
    #[arg(long)]
    blobs: Option<String>,
    /// The folder to write <blob>.npy files into.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The GPU to run on; the CPU when absent or empty.
    #[arg(long)]
    gpu: Option<String>,
}

#[derive(Args, Debug)]
struct ExportArgs {
    /// The net to export (a NetParameter prototxt, e.g. deploy.prototxt).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Comma-separated trained weights (.caffemodel, .caffemodel.h5 or .safetensors).
    #[arg(long)]
    weights: Option<String>,
    /// onnx, pytorch (a folder with model.py and weights.safetensors) or safetensors.
    #[arg(long, default_value = "onnx")]
    format: String,
    /// The file (onnx, safetensors) or folder (pytorch) to write.
    #[arg(long)]
    out: Option<PathBuf>,
    /// The ONNX opset to write (13 and above).
    #[arg(long, default_value_t = crate::export::DEFAULT_OPSET)]
    opset: i64,
    /// Which phase of the net to build: TRAIN or TEST.
    #[arg(long, default_value = "TEST")]
    phase: String,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    stage: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    level: Option<i32>,
    /// The solver iteration DropIn layers are exported at (default: fully grown).
    #[arg(long)]
    iteration: Option<i64>,
    /// An Input blob's shape, replacing the prototxt's: NAME=d0,d1,...; repeat for several.
    #[arg(long = "input_shape")]
    input_shape: Vec<String>,
    /// `all` also exposes every intermediate blob under its Caffe name.
    #[arg(long)]
    blobs: Option<String>,
    /// safetensors names: pytorch (conv1.weight) or caffe (conv1.0).
    #[arg(long, default_value = "pytorch")]
    names: String,
    /// Run the exported model next to caffe-tch's forward and compare every output.
    #[arg(long)]
    verify: bool,
    /// What runs an ONNX model for -verify (which it implies): onnxruntime (the default), openvino or opencv (its DNN).
    #[arg(long = "verify_with")]
    verify_with: Option<String>,
    /// An input's value for -verify: NAME=file.npy; repeat for several (others are seeded random).
    #[arg(long)]
    input: Vec<String>,
}

#[derive(Args, Debug)]
struct SummarizeArgs {
    /// Prototxt files or folders (searched for *.prototxt).
    paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
struct InOut {
    /// The file to read.
    input: PathBuf,
    /// The file to write (written whole or not at all).
    output: PathBuf,
}

#[derive(Args, Debug)]
struct Passthrough {
    /// The tool's own flags and arguments, as Caffe's tool takes them (`-help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Rewrites gflags-style `-name` / `-name=value` into `--name` / `--name=value`.
/// Single-letter flags (`-o`) and negative numbers are left alone.
fn gflags_to_gnu(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    args.into_iter()
        .enumerate()
        .map(|(i, a)| {
            let Some(text) = a.to_str() else { return a };
            let bytes = text.as_bytes();
            let is_gflag = i > 0
                && bytes.len() > 2
                && bytes[0] == b'-'
                && bytes[1] != b'-'
                && (bytes[1].is_ascii_alphabetic() || bytes[1] == b'_')
                && bytes[2] != b'=';
            if is_gflag {
                format!("-{text}").into()
            } else {
                a
            }
        })
        .collect()
}

/// Caffe's comma-separated file lists (`-weights a.caffemodel,b.caffemodel`).
fn split_paths(s: Option<&str>) -> Vec<PathBuf> {
    s.map(|s| crate::util::comma_list(s).into_iter().map(PathBuf::from).collect()).unwrap_or_default()
}

/// clap's unknown-flag error in the spelling the user typed (`-outpt`, which
/// clap saw as `--outpt` after the gflags rewrite), with its closest valid
/// flag when it has one.
fn unknown_flag_message(e: &clap::Error, args: &[OsString]) -> String {
    use clap::error::{ContextKind, ContextValue};
    let as_text = |kind| match e.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => v.first().cloned(),
        _ => None,
    };
    let Some(seen) = as_text(ContextKind::InvalidArg) else {
        let first = e.to_string().lines().next().unwrap_or_default().to_string();
        return first.trim_start_matches("error: ").to_string();
    };
    let name = seen.trim_start_matches('-');
    let single = format!("-{name}");
    let typed_single = args
        .iter()
        .filter_map(|a| a.to_str())
        .any(|a| a == single || a.strip_prefix(&single).is_some_and(|rest| rest.starts_with('=')));
    let shown = if typed_single { single } else { seen.clone() };
    let mut msg = format!("unknown flag '{shown}'");
    if let Some(suggested) = as_text(ContextKind::SuggestedArg) {
        let suggested = suggested.split_whitespace().next().unwrap_or_default().to_string();
        let suggested = if typed_single { format!("-{}", suggested.trim_start_matches('-')) } else { suggested };
        msg.push_str(&format!(" (did you mean '{suggested}'?)"));
    }
    msg
}

/// Runs a `caffe` command line (`args[0]` is the program name) and returns
/// the exit code. Errors are printed as one line, `caffe: error: ...`.
pub fn main(args: Vec<OsString>, host: &Host) -> u8 {
    let code = parse_and_run(args, host);
    // The Python host exits through Python, which does not flush Rust's stdout.
    if let Err(e) = std::io::stdout().flush() {
        eprintln!("caffe: error: cannot write to stdout: {e}");
        return 1;
    }
    code
}

fn parse_and_run(args: Vec<OsString>, host: &Host) -> u8 {
    let cli = match Cli::try_parse_from(gflags_to_gnu(args.iter().cloned())) {
        Ok(c) => c,
        Err(e) => {
            use clap::error::ErrorKind;
            if !e.use_stderr() {
                // Help and version go to stdout; a closed stdout is not worth an error.
                let _ = e.print();
                return 0;
            }
            // Caffe lists the valid commands; so do we, for unknown commands and flags.
            let msg = e.kind();
            if msg == ErrorKind::UnknownArgument {
                eprintln!("caffe: {}", unknown_flag_message(&e, &args));
            } else {
                let first = e.to_string().lines().next().unwrap_or_default().to_string();
                eprintln!("caffe: {}", first.trim_start_matches("error: "));
            }
            match msg {
                ErrorKind::InvalidSubcommand
                | ErrorKind::MissingSubcommand
                | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
                    let names: Vec<String> =
                        Cli::command().get_subcommands().map(|c| c.get_name().to_string()).collect();
                    eprintln!("caffe: valid commands: {}", names.join(", "));
                }
                ErrorKind::UnknownArgument => {
                    let cmd = Cli::command();
                    if let Some(sub) = args.get(1).and_then(|a| a.to_str()).and_then(|a| cmd.find_subcommand(a)) {
                        let flags: Vec<String> =
                            sub.get_arguments().filter_map(|a| a.get_long()).map(|l| format!("-{l}")).collect();
                        eprintln!("caffe: valid flags for '{}': {}", sub.get_name(), flags.join(", "));
                    }
                }
                _ => {}
            }
            return 1;
        }
    };
    let run = || {
        if let Host::Binary = host {
            // The binary owns its process, so it may replace libtorch's allocator.
            crate::util::allocator::install_caching_cpu_allocator();
            if let Some(found) = python::python_layer_in(&cli.command, TextOptions { lenient: cli.lenient }) {
                // Returns only when Python could not be started.
                return Err(python::run_under_python(&args[1..], &found));
            }
        }
        run(cli, &args[1..], host)
    };
    let outcome = crate::util::contain::libtorch_panics_as_errors(run)
        .unwrap_or_else(|libtorch| Err(Error::Torch(tch::TchError::Torch(libtorch))));
    match outcome {
        Ok(code) => code,
        Err(e) => {
            // One line, as the user needs it.
            let msg = e.to_string().replace('\n', " ");
            eprintln!("caffe: error: {msg}");
            1
        }
    }
}

fn run(cli: Cli, args: &[OsString], host: &Host) -> Result<u8> {
    let opts = TextOptions { lenient: cli.lenient };
    if let Some(m) = &cli.max_memory {
        crate::util::limits::set_max_memory(crate::util::limits::parse_bytes(m)?);
    }
    match cli.command {
        Command::DeviceQuery(_) => {
            for line in tools::device_query::report() {
                info!("caffe.cpp:112", "{line}");
            }
            Ok(0)
        }
        Command::Summarize(a) => {
            tools::summarize::run(&a.paths, opts)?;
            Ok(0)
        }
        Command::UpgradeNetProtoText(a) => {
            tools::upgrade::net_text(&a.input, &a.output, opts)?;
            Ok(0)
        }
        Command::UpgradeNetProtoBinary(a) => {
            tools::upgrade::net_binary(&a.input, &a.output)?;
            Ok(0)
        }
        Command::UpgradeSolverProtoText(a) => {
            tools::upgrade::solver_text(&a.input, &a.output, opts)?;
            Ok(0)
        }
        Command::Train(a) => {
            let o = crate::solver::cli::TrainOptions {
                solver: a.solver,
                weights: a.weights,
                snapshot: a.snapshot,
                gpu: a.gpu,
                level: a.level,
                stage: a.stage,
                sigint_effect: a.sigint_effect,
                sighup_effect: a.sighup_effect,
                dist_timeout: Some(a.dist_timeout),
                ranks: a.ranks,
                cuda_graph: a.cuda_graph,
                text: opts,
            };
            // -ranks N, or -gpu with several devices, outside a launcher: this
            // process becomes the launcher of one rank per process.
            if let Some(ranks) = crate::solver::cli::ranks_to_start(&o)? {
                crate::dist::launch::run_ranks(ranks, &host.relaunch()?, args)?;
                return Ok(0);
            }
            crate::solver::cli::train(&o)?;
            Ok(0)
        }
        Command::Test(a) => {
            crate::solver::cli::test(&crate::solver::cli::TestOptions {
                model: a.model,
                weights: a.weights,
                iterations: a.iterations,
                gpu: a.gpu,
                level: a.level,
                stage: a.stage,
                iteration: a.iteration,
                text: opts,
            })?;
            Ok(0)
        }
        Command::Time(a) => {
            let model = a.model.ok_or_else(|| Error::usage("caffe time needs -model (a net prototxt)"))?;
            let o = tools::time::TimeOptions {
                iterations: a.iterations,
                phase: tools::parse_phase(&a.phase)?,
                level: a.level.unwrap_or(0),
                stages: tools::parse_stages(a.stage.as_deref()),
                device: tools::select_device(a.gpu.as_deref())?,
                weights: split_paths(a.weights.as_deref()),
                cuda_graph: a.cuda_graph,
            };
            tools::time::run(&model, opts, &o)?;
            Ok(0)
        }
        Command::Forward(a) => {
            let model = a.model.ok_or_else(|| Error::usage("caffe forward needs -model (a net prototxt)"))?;
            let out = a.out.ok_or_else(|| Error::usage("caffe forward needs -out DIR"))?;
            let o = tools::forward::ForwardOptions {
                weights: split_paths(a.weights.as_deref()),
                inputs: a.input.iter().map(|s| tools::forward::parse_input(s)).collect::<Result<_, _>>()?,
                phase: tools::parse_phase(&a.phase)?,
                level: a.level.unwrap_or(0),
                stages: tools::parse_stages(a.stage.as_deref()),
                iteration: a.iteration,
                blobs: a.blobs.as_deref().map(|b| if b == "all" { vec![] } else { crate::util::comma_list(b) }),
                out,
                device: tools::select_device(a.gpu.as_deref())?,
            };
            tools::forward::run(&model, opts, &o)?;
            Ok(0)
        }
        Command::Export(a) => {
            let model = a.model.ok_or_else(|| Error::usage("caffe export needs -model (a net prototxt)"))?;
            let out = a
                .out
                .ok_or_else(|| Error::usage("caffe export needs -out (a file, or a folder for -format pytorch)"))?;
            let all_blobs = match a.blobs.as_deref() {
                None => false,
                Some("all") => true,
                Some(other) => return Err(Error::usage(format!("-blobs takes only `all` for export, got '{other}'"))),
            };
            let names = match a.names.as_str() {
                "pytorch" => crate::export::TensorNames::Pytorch,
                "caffe" => crate::export::TensorNames::Caffe,
                other => return Err(Error::usage(format!("-names must be pytorch or caffe, got '{other}'"))),
            };
            let o = crate::export::ExportOptions {
                build: crate::export::BuildOptions {
                    weights: split_paths(a.weights.as_deref()),
                    phase: tools::parse_phase(&a.phase)?,
                    level: a.level.unwrap_or(0),
                    stages: tools::parse_stages(a.stage.as_deref()),
                    iteration: a.iteration,
                    input_shapes: a
                        .input_shape
                        .iter()
                        .flat_map(|s| s.split(';').map(str::to_string).collect::<Vec<_>>())
                        .map(|s| crate::export::plan::parse_input_shape(&s))
                        .collect::<Result<_, _>>()?,
                },
                format: crate::export::Format::parse(&a.format)?,
                out,
                opset: a.opset,
                all_blobs,
                names,
                verify: a.verify || a.verify_with.is_some(),
                verify_with: crate::export::verify::Runtime::parse(a.verify_with.as_deref().unwrap_or("onnxruntime"))?,
                inputs: a.input.iter().map(|s| tools::forward::parse_input(s)).collect::<Result<_, _>>()?,
            };
            let passed = crate::export::run(&model, opts, &o)?;
            Ok(if passed { 0 } else { 1 })
        }
        Command::ConvertMnistData(a) => {
            tool(tools::convert_mnist_data::main, &tools::convert_mnist_data::SPEC, &a.args)
        }
        Command::ConvertMnistSiameseData(a) => {
            tool(tools::convert_mnist_siamese_data::main, &tools::convert_mnist_siamese_data::SPEC, &a.args)
        }
        Command::ConvertCifarData(a) => {
            tool(tools::convert_cifar_data::main, &tools::convert_cifar_data::SPEC, &a.args)
        }
        Command::ConvertImageset(a) => tool(tools::convert_imageset::main, &tools::convert_imageset::SPEC, &a.args),
        Command::ConvertAnnoset(a) => tool(tools::convert_annoset::main, &tools::convert_annoset::SPEC, &a.args),
        Command::GetImageSize(a) => {
            tool(tools::convert_annoset::get_image_size, &tools::convert_annoset::SIZE_SPEC, &a.args)
        }
        Command::ComputeImageMean(a) => {
            tool(tools::compute_image_mean::main, &tools::compute_image_mean::SPEC, &a.args)
        }
        Command::ExtractFeatures(a) => tool(tools::extract_features::main, &tools::extract_features::SPEC, &a.args),
        Command::Data(a) => tool(tools::data_step::main, &tools::data_step::SPEC, &a.args),
        Command::Plot(a) => tool(tools::plot::main, &tools::plot::SPEC, &a.args),
        Command::ParseLog(a) => tool(tools::parse_log::main, &tools::parse_log::SPEC, &a.args),
    }
}

/// The tools that parse their own Caffe-style arguments; `-help` prints
/// their flags on stdout, as gflags does.
fn tool(main: fn(&[String]) -> Result<()>, spec: &tools::gflags::Spec, args: &[String]) -> Result<u8> {
    if tools::gflags::wants_help(args) {
        print!("{}", tools::gflags::help(spec));
        return Ok(0);
    }
    main(args)?;
    Ok(0)
}
