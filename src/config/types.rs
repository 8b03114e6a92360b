//! The values configuration produces beyond plain numbers and text, and its error.

/// Which namespaces to watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Namespaces {
    /// `__all__`: one cluster-wide watch.
    All,
    /// One watch per namespace, each listed once.
    List(Vec<String>),
}

/// How to reach the cluster (`SENTRY_K8S_CLUSTER_CONFIG_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterConfigType {
    /// In-cluster when the service-account environment and files exist, else kubeconfig.
    Auto,
    InCluster,
    OutCluster,
}

/// The agent's own log verbosity (`SENTRY_K8S_LOG_LEVEL`, zerolog's level names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
    Off,
}

impl LogLevel {
    /// The tracing filter directive for this level.
    pub fn as_directive(self) -> &'static str {
        match self {
            Self::Trace => "trace",
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
            Self::Off => "off",
        }
    }
}

/// A switch whose default depends on where the agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    /// On in a cluster (in-cluster configuration), off outside.
    Auto,
    On,
    Off,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A configuration error: one line naming the variable and the bad value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{variable}={value:?}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub value: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(variable: &str, value: &str, reason: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }
}

/// Warnings found while loading (aliases used, unknown variables); logged once logging is up.
pub type Notices = Vec<String>;
