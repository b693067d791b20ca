//! The command line's grammar: Caffe's sub-commands and their flags (clap),
//! the rewrite of gflags' `-flag` into clap's `--flag`, and the message for
//! a flag no command has, in the spelling the user typed.
use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "caffe", version, about = "Caffe on libtorch: train, test and time Caffe nets unchanged")]
pub(super) struct Cli {
    /// Skip unknown fields and enum values in prototxt files with a warning, instead of failing.
    #[arg(long, global = true)]
    pub(super) lenient: bool,
    /// The most memory a net's blobs and parameters may plan to take (e.g. 512M, 4G); the machine's memory by default.
    #[arg(long = "max_memory", global = true)]
    pub(super) max_memory: Option<String>,
    /// Shared libraries of C++ layer types to load first, comma-separated (also CAFFE_TCH_LAYER_LIBRARIES, ':'-separated).
    #[arg(long = "layer_library", global = true)]
    pub(super) layer_library: Option<String>,
    #[command(subcommand)]
    pub(super) command: Command,
}

#[derive(Subcommand, Debug)]
pub(super) enum Command {
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
    /// Link a Caffe tree's build/tools and build/examples programs to this caffe, for Caffe's scripts.
    #[command(name = "link_build_tree", disable_help_flag = true)]
    LinkBuildTree(Passthrough),
}

#[derive(Args, Debug)]
pub(super) struct GpuArg {
    /// The GPU to describe (an id, or `all`); the CPU when absent.
    #[arg(long)]
    pub(super) gpu: Option<String>,
}

#[derive(Args, Debug)]
pub(super) struct TrainArgs {
    /// The solver definition (a SolverParameter prototxt).
    #[arg(long)]
    pub(super) solver: Option<PathBuf>,
    /// Comma-separated .caffemodel (or .caffemodel.h5) files to initialise from; not with -snapshot.
    #[arg(long)]
    pub(super) weights: Option<String>,
    /// A .solverstate (or .solverstate.h5) to resume training from.
    #[arg(long)]
    pub(super) snapshot: Option<PathBuf>,
    /// The GPUs to train on: one id, or several (`0,1`, `all`) for one rank per device over NCCL; the CPU when absent or empty.
    #[arg(long)]
    pub(super) gpu: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    pub(super) level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    pub(super) stage: Option<String>,
    /// What SIGINT does: stop (snapshot first if the solver asks for it), snapshot, or none.
    #[arg(long = "sigint_effect", default_value = "stop")]
    pub(super) sigint_effect: String,
    /// What SIGHUP does: snapshot, stop, or none.
    #[arg(long = "sighup_effect", default_value = "snapshot")]
    pub(super) sighup_effect: String,
    /// Data-parallel on this machine: start N ranks of this command (Gloo on loopback) and wait for them.
    #[arg(long)]
    pub(super) ranks: Option<usize>,
    /// Seconds a data-parallel rank waits for the others (rendezvous, each collective) before failing.
    #[arg(long = "dist_timeout", default_value_t = 300)]
    pub(super) dist_timeout: u64,
    /// Record the training pass (forward and backward after the data layers) in a CUDA graph and replay it.
    #[arg(long = "cuda_graph")]
    pub(super) cuda_graph: bool,
}

#[derive(Args, Debug)]
pub(super) struct TestArgs {
    /// The net to score (a NetParameter prototxt; its TEST phase is built).
    #[arg(long)]
    pub(super) model: Option<PathBuf>,
    /// Comma-separated trained weights (.caffemodel or .caffemodel.h5).
    #[arg(long)]
    pub(super) weights: Option<String>,
    /// How many batches to score.
    #[arg(long, default_value_t = 50)]
    pub(super) iterations: i64,
    /// The GPU to run on; the CPU when absent or empty.
    #[arg(long)]
    pub(super) gpu: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    pub(super) level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    pub(super) stage: Option<String>,
    /// The solver iteration seen by DropIn layers, e.g. the snapshot's (default: fully grown).
    #[arg(long)]
    pub(super) iteration: Option<i64>,
}

#[derive(Args, Debug)]
pub(super) struct TimeArgs {
    /// The net to time (a NetParameter prototxt).
    #[arg(long)]
    pub(super) model: Option<PathBuf>,
    /// Comma-separated weights to load first (optional: timing does not need them).
    #[arg(long)]
    pub(super) weights: Option<String>,
    /// How many forward-backward rounds to average over.
    #[arg(long, default_value_t = 50)]
    pub(super) iterations: i64,
    /// Which phase of the net to build: TRAIN or TEST.
    #[arg(long, default_value = "TRAIN")]
    pub(super) phase: String,
    /// The GPU to run on; the CPU when absent or empty.
    #[arg(long)]
    pub(super) gpu: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    pub(super) level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    pub(super) stage: Option<String>,
    /// Time the forward-backward as a CUDA graph's replay (see caffe train -cuda_graph).
    #[arg(long = "cuda_graph")]
    pub(super) cuda_graph: bool,
}

#[derive(Args, Debug)]
pub(super) struct ForwardArgs {
    /// The net to run (a NetParameter prototxt).
    #[arg(long)]
    pub(super) model: Option<PathBuf>,
    /// Comma-separated trained weights (.caffemodel or .caffemodel.h5).
    #[arg(long)]
    pub(super) weights: Option<String>,
    /// An input blob's value: NAME=file.npy; repeat for several inputs.
    #[arg(long)]
    pub(super) input: Vec<String>,
    /// Which phase of the net to build: TRAIN or TEST.
    #[arg(long, default_value = "TEST")]
    pub(super) phase: String,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    pub(super) level: Option<i32>,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    pub(super) stage: Option<String>,
    /// The solver iteration seen by DropIn layers (default: fully grown).
    #[arg(long)]
    pub(super) iteration: Option<i64>,
    /// Comma-separated blob names to write, or `all`; the net's outputs by default.
    #[arg(long)]
    pub(super) blobs: Option<String>,
    /// The folder to write <blob>.npy files into.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// The GPU to run on; the CPU when absent or empty.
    #[arg(long)]
    pub(super) gpu: Option<String>,
}

#[derive(Args, Debug)]
pub(super) struct ExportArgs {
    /// The net to export (a NetParameter prototxt, e.g. deploy.prototxt).
    #[arg(long)]
    pub(super) model: Option<PathBuf>,
    /// Comma-separated trained weights (.caffemodel, .caffemodel.h5 or .safetensors).
    #[arg(long)]
    pub(super) weights: Option<String>,
    /// onnx, pytorch (a folder with model.py and weights.safetensors) or safetensors.
    #[arg(long, default_value = "onnx")]
    pub(super) format: String,
    /// The file (onnx, safetensors) or folder (pytorch) to write.
    #[arg(long)]
    pub(super) out: Option<PathBuf>,
    /// The ONNX opset to write (13 and above).
    #[arg(long, default_value_t = crate::export::DEFAULT_OPSET)]
    pub(super) opset: i64,
    /// Which phase of the net to build: TRAIN or TEST.
    #[arg(long, default_value = "TEST")]
    pub(super) phase: String,
    /// Comma-separated NetState stages, for include/exclude rules with stage/not_stage.
    #[arg(long)]
    pub(super) stage: Option<String>,
    /// The NetState level, for include/exclude rules with min_level/max_level.
    #[arg(long)]
    pub(super) level: Option<i32>,
    /// The solver iteration DropIn layers are exported at (default: fully grown).
    #[arg(long)]
    pub(super) iteration: Option<i64>,
    /// An Input blob's shape, replacing the prototxt's: NAME=d0,d1,...; repeat for several.
    #[arg(long = "input_shape")]
    pub(super) input_shape: Vec<String>,
    /// `all` also exposes every intermediate blob under its Caffe name.
    #[arg(long)]
    pub(super) blobs: Option<String>,
    /// safetensors names: pytorch (conv1.weight) or caffe (conv1.0).
    #[arg(long, default_value = "pytorch")]
    pub(super) names: String,
    /// Run the exported model next to caffe-tch's forward and compare every output.
    #[arg(long)]
    pub(super) verify: bool,
    /// What runs an ONNX model for -verify (which it implies): onnxruntime (the default), openvino or opencv (its DNN).
    #[arg(long = "verify_with")]
    pub(super) verify_with: Option<String>,
    /// An input's value for -verify: NAME=file.npy; repeat for several (others are seeded random).
    #[arg(long)]
    pub(super) input: Vec<String>,
}

#[derive(Args, Debug)]
pub(super) struct SummarizeArgs {
    /// Prototxt files or folders (searched for *.prototxt).
    pub(super) paths: Vec<PathBuf>,
}

#[derive(Args, Debug)]
pub(super) struct InOut {
    /// The file to read.
    pub(super) input: PathBuf,
    /// The file to write (written whole or not at all).
    pub(super) output: PathBuf,
}

#[derive(Args, Debug)]
pub(super) struct Passthrough {
    /// The tool's own flags and arguments, as Caffe's tool takes them (`-help` lists them).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub(super) args: Vec<String>,
}

/// Rewrites gflags-style `-name` / `-name=value` into `--name` / `--name=value`.
/// Single-letter flags (`-o`) and negative numbers are left alone.
pub(super) fn gflags_to_gnu(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
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

/// clap's unknown-flag error in the spelling the user typed (`-outpt`, which
/// clap saw as `--outpt` after the gflags rewrite), with its closest valid
/// flag when it has one.
pub(super) fn unknown_flag_message(e: &clap::Error, args: &[OsString]) -> String {
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
