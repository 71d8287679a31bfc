//! `nacos-operator`: command-line front end of the operator library.

use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Kubernetes operator for Nacos-compatible registry clusters.
#[derive(Debug, Parser)]
#[command(name = "nacos-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the NacosCluster CustomResourceDefinition as YAML (the content of
    /// crds/nacoscluster.yaml).
    Crd,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd => match nacos_operator::crd::crd_yaml() {
            Ok(yaml) => match std::io::stdout().lock().write_all(yaml.as_bytes()) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => {
                    eprintln!("nacos-operator: cannot write the CRD: {error}");
                    ExitCode::FAILURE
                }
            },
            Err(error) => {
                eprintln!("nacos-operator: {}", snafu::Report::from_error(error));
                ExitCode::FAILURE
            }
        },
    }
}
