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

use clap::{CommandFactory, Parser};

use crate::proto::text::TextOptions;
use crate::{info, tools, Error, Result};

mod args;
mod python;

use args::{gflags_to_gnu, unknown_flag_message, Cli, Command};

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

/// Caffe's comma-separated file lists (`-weights a.caffemodel,b.caffemodel`).
fn split_paths(s: Option<&str>) -> Vec<PathBuf> {
    s.map(|s| crate::util::comma_list(s).into_iter().map(PathBuf::from).collect()).unwrap_or_default()
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

fn parse_and_run(mut args: Vec<OsString>, host: &Host) -> u8 {
    // Started as one of a Caffe build's programs (`build/tools/convert_imageset`,
    // a link `caffe link_build_tree` made): that program's command.
    if let Some(command) = args.first().and_then(|p| tools::build_tree::command_for_program(p)) {
        args.insert(1, command.into());
    }
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
    crate::layers::external::library::load_from_env()?;
    for path in split_paths(cli.layer_library.as_deref()) {
        let types = crate::layers::external::library::load(&path)?;
        info!("layer_library.cpp:1", "Layer library {}: {}", path.display(), types.join(", "));
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
        Command::LinkBuildTree(a) => tool(tools::build_tree::main, &tools::build_tree::SPEC, &a.args),
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
