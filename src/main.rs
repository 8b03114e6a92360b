//! The `sentry-kubernetes` binary: configuration, logging, then the agent until a signal.

use std::process::ExitCode;

use sentry_kubernetes::config::Config;
use sentry_kubernetes::{Agent, logging, shutdown_signal};

fn main() -> ExitCode {
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
