//! `ladder`: one binary for every service, the whole stack on one machine (`ladder dev`) and the operator
//! commands. This file only parses the command line, sets up logging and hands over to `commands`.
#![forbid(unsafe_code)]

mod commands;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = commands::Cli::parse();
    let _traces = match commands::init_tracing(&cli) {
        Ok(guard) => guard,
        Err(e) => {
            eprintln!("ladder: configuration error: {e:#}");
            return std::process::ExitCode::from(64);
        }
    };
    match commands::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(commands::Failure::Config(e)) => {
            eprintln!("ladder: configuration error: {e:#}");
            // EX_CONFIG-style usage error, as linkerd2-proxy does: never fall back to a default silently.
            std::process::ExitCode::from(64)
        }
        Err(commands::Failure::Runtime(e)) => {
            eprintln!("ladder: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
