//! The `sentry-kubernetes` binary: the command line, configuration, logging, then the agent
//! until a signal.

use std::process::ExitCode;

use sentry_kubernetes::config::{Config, docs};
use sentry_kubernetes::{Agent, logging, shutdown_signal};

/// What the command line asks for. The agent takes no options: it is configured by its
/// environment, like the Go agent it replaces.
enum Command {
    Run,
    Help,
    Version,
}

fn command(args: impl Iterator<Item = String>) -> Result<Command, String> {
    let args: Vec<String> = args.collect();
    match args.as_slice() {
        [] => Ok(Command::Run),
        [one] if one == "--help" || one == "-h" => Ok(Command::Help),
        [one] if one == "--version" || one == "-V" => Ok(Command::Version),
        [one, ..] => Err(format!(
            "unknown argument {one:?}; the agent is configured by environment variables (try --help)"
        )),
    }
}

fn main() -> ExitCode {
    match command(std::env::args().skip(1)) {
        Ok(Command::Run) => {}
        Ok(Command::Help) => {
            print!("{}", docs::help());
            return ExitCode::SUCCESS;
        }
        Ok(Command::Version) => {
            println!(
                "sentry-kubernetes {} (commit {}, {})",
                env!("CARGO_PKG_VERSION"),
                env!("SENTRY_K8S_COMMIT"),
                env!("SENTRY_K8S_RUSTC")
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("sentry-kubernetes: {e}");
            return ExitCode::from(2);
        }
    }
    let (config, notices) = match Config::from_env() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("sentry-kubernetes: configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    logging::init(&config);
    for notice in notices {
        tracing::warn!("{notice}");
    }
    // One thread: the agent's work per event is microseconds, and waits dominate. Measured
    // on the benchmark: the same CPU per event as a worker pool, a megabyte less resident,
    // and no cross-thread wakeups (benches/RESULTS.md). Blocking work (DNS) still gets
    // tokio's blocking threads.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sentry-kubernetes: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(Agent::new(config).run(shutdown_signal())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("sentry-kubernetes: {e}");
            ExitCode::from(e.exit_code())
        }
    }
}
