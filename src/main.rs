//! The `tooljet-gitsync-operator` binary: `run` the operator, or print the `crd`s.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "tooljet-gitsync-operator", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print both CustomResourceDefinitions as YAML.
    Crd,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Crd => match tooljet_gitsync_operator::api::crds_yaml() {
            Ok(docs) => {
                for (_, yaml) in docs {
                    print!("---\n{yaml}");
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("cannot render CRDs: {e}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}
