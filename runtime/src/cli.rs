//! `mgc-run`: executes plans with libtorch, and probes the machine. `mgc run` and `mgc probe`
//! hand over to it, so that the light `mgc` binary never loads libtorch.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use mgc_core::Output;

use crate::exec::{self, Options};

#[derive(Debug, Parser)]
#[command(
    name = "mgc-run",
    version,
    about = "Runs mgc plans with libtorch and measures this machine",
    max_term_width = 100
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum Format {
    #[default]
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
enum CopiesArg {
    #[default]
    Streams,
    Torch,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a plan and report measured against predicted
    Run {
        plan: PathBuf,
        /// Steps of each diffusion model (text encoders and VAEs run one)
        #[arg(long, default_value_t = 4)]
        steps: usize,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
        /// How streamed layers are copied: `streams` overlaps copies with compute on CUDA (a copy
        /// stream, events between streams); `torch` waits for each copy (for comparison)
        #[arg(long, value_enum, default_value_t)]
        copies: CopiesArg,
    },
    /// Measure this machine and write the hardware profile the compiler reads
    Probe {
        #[arg(long, short)]
        output: Option<PathBuf>,
        #[arg(long, value_enum, default_value_t)]
        format: Format,
    },
}

pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return ExitCode::from(if error.use_stderr() { 2 } else { 0 });
        }
    };
    match cli.command {
        Command::Run { plan, steps, format, copies } => {
            let progress = format == Format::Human;
            let copies = match copies {
                CopiesArg::Streams => exec::Copies::Streams,
                CopiesArg::Torch => exec::Copies::Torch,
            };
            match exec::run(&plan, &Options { steps, progress, copies }) {
                Ok(report) => {
                    match format {
                        Format::Json => {
                            say(&format!("{}\n", serde_json::to_string_pretty(&report).unwrap_or_default()))
                        }
                        Format::Human => say(&exec::human(&report)),
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    match format {
                        Format::Json => {
                            let json = serde_json::json!({ "errors": [{ "message": error.to_string(), "help": error.help() }] });
                            say(&format!("{}\n", serde_json::to_string_pretty(&json).unwrap_or_default()));
                        }
                        Format::Human => {
                            eprintln!("error: {error}");
                            if let Some(help) = error.help() {
                                eprintln!("  help: {help}");
                            }
                        }
                    }
                    ExitCode::from(error.exit_code())
                }
            }
        }
        Command::Probe { output: path, format } => {
            let output = match path.as_deref().map(Output::for_path).transpose() {
                Ok(output) => output,
                Err(e) => {
                    eprintln!("error: cannot write the profile: {e}");
                    return ExitCode::from(2);
                }
            };
            // The disk is measured where the profile goes, when it goes to a folder.
            let scratch = output.as_ref().and_then(Output::folder).map_or_else(std::env::temp_dir, PathBuf::from);
            match exec::probe::probe(&scratch) {
                Ok(probe) => {
                    // With `-o -` the profile is what stdout holds (its comments list the figures).
                    let on_stdout = output == Some(Output::Stdout);
                    match format {
                        _ if on_stdout => {}
                        Format::Json => say(&format!("{}\n", serde_json::to_string_pretty(&probe).unwrap_or_default())),
                        Format::Human => say(&probe.human()),
                    }
                    if let (Some(path), Some(output)) = (path, output) {
                        let written = probe.profile_toml().map_err(|e| e.to_string()).and_then(|text| {
                            output
                                .write(&mut std::io::stdout().lock(), |w| w.write_all(text.as_bytes()))
                                .map_err(|e| e.to_string())
                        });
                        if let Err(e) = written {
                            eprintln!("error: cannot write the profile: {e}");
                            return ExitCode::from(2);
                        }
                        if format == Format::Human && !on_stdout {
                            say(&format!("wrote {}\n", path.display()));
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::from(error.exit_code())
                }
            }
        }
    }
}

/// Writes to stdout; a closed pipe (`| head`) is not an error worth a panic.
fn say(text: &str) {
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}
