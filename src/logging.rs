//! The agent's own logs: tracing-subscriber, text or JSON lines on stderr.
//!
//! stdout is reserved for the dry-run output, so logs always go to stderr.

use tracing_subscriber::EnvFilter;

use crate::config::{Config, LogFormat};

/// The filter for a configured level. kube-runtime's own watch warnings are silenced: the
/// source logs every watch error itself, with the apiserver's message.
pub fn filter_directive(config: &Config) -> String {
    if let Some(rust_log) = &config.rust_log {
        return rust_log.clone();
    }
    let level = config.log_level.as_directive();
    if level == "off" {
        return "off".into();
    }
    format!("warn,kube_runtime=error,sentry_kubernetes={level}")
}

/// Installs the global subscriber. Safe to call more than once (later calls do nothing).
pub fn init(config: &Config) {
    let filter = EnvFilter::try_new(filter_directive(config)).unwrap_or_else(|e| {
        eprintln!("RUST_LOG is not a valid filter ({e}); using info");
        EnvFilter::new("info")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true);
    let _ = match config.log_format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(vars: &[(&str, &str)]) -> Config {
        Config::from_vars(vars.iter().copied()).unwrap().0
    }

    #[test]
    fn rust_log_wins_over_the_level() {
        assert_eq!(
            filter_directive(&config(&[("SENTRY_K8S_LOG_LEVEL", "debug")])),
            "warn,kube_runtime=error,sentry_kubernetes=debug"
        );
        assert_eq!(
            filter_directive(&config(&[
                ("SENTRY_K8S_LOG_LEVEL", "debug"),
                ("RUST_LOG", "trace")
            ])),
            "trace"
        );
        assert_eq!(
            filter_directive(&config(&[("SENTRY_K8S_LOG_LEVEL", "disabled")])),
            "off"
        );
    }
}
