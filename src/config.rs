//! Configuration: every environment variable the agent reads, parsed and validated once.
//!
//! The names, defaults and meanings of getsentry/sentry-kubernetes are kept, so swapping the
//! image keeps working. The spellings that lose their underscores when the variable names
//! are pasted through Markdown (`SENTRYK8SWATCH_NAMESPACES`, `SENTRYK8SCLUSTERCONFIGTYPE`)
//! are accepted as aliases; the canonical name wins when both are set.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use sentry::types::Dsn;
use serde::Deserialize;

use crate::redact::redact_dsn;

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

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where the in-cluster credentials are. Standard locations by default; overridable for
/// tests and for platforms that mount them elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InCluster {
    /// `KUBERNETES_SERVICE_HOST`
    pub service_host: Option<String>,
    /// `KUBERNETES_SERVICE_PORT`
    pub service_port: Option<String>,
    /// `SENTRY_K8S_SERVICE_ACCOUNT_DIR` (token, ca.crt, namespace)
    pub service_account_dir: PathBuf,
}

/// Everything the agent is told, validated. Built by [`Config::from_env`] (the process
/// environment) or [`Config::from_vars`] (tests).
#[derive(Clone, Debug)]
pub struct Config {
    /// `SENTRY_DSN`. None: nothing is sent; events are printed as JSON lines (dry run).
    pub dsn: Option<Dsn>,
    /// `SENTRY_ENVIRONMENT`
    pub environment: Option<String>,
    /// `SENTRY_RELEASE`
    pub release: Option<String>,
    /// `SENTRY_K8S_WATCH_NAMESPACES` (default `default`)
    pub namespaces: Namespaces,
    /// `SENTRY_K8S_WATCH_HISTORICAL`: report events already stored at start.
    pub historical: bool,
    /// `SENTRY_K8S_CLUSTER_CONFIG_TYPE` (default `auto`)
    pub cluster_config: ClusterConfigType,
    /// `SENTRY_K8S_KUBECONFIG_PATH`, else the `KUBECONFIG` list, else `~/.kube/config`.
    pub kubeconfig: Vec<PathBuf>,
    /// Which variable [`Config::kubeconfig`] came from, for error messages.
    pub kubeconfig_source: &'static str,
    pub in_cluster: InCluster,
    /// `SENTRY_K8S_LOG_LEVEL` (default `info`)
    pub log_level: LogLevel,
    /// `SENTRY_K8S_LOG_FORMAT`: `text` (default) or `json`.
    pub log_format: LogFormat,
    /// `RUST_LOG`: a tracing filter that overrides the log level when set.
    pub rust_log: Option<String>,
    /// `SENTRY_K8S_MONITOR_CRONJOBS`: Sentry Crons check-ins for CronJob runs.
    pub monitor_cronjobs: bool,
    /// `SENTRY_K8S_CUSTOM_DSNS`: per-object DSN from the `k8s.sentry.io/dsn` annotation.
    pub custom_dsns: bool,
    /// `SENTRY_K8S_FILTER_OUT_EVENT_REASONS`, lowercased (matching is case-insensitive).
    pub filter_out_reasons: Vec<String>,
    /// `SENTRY_K8S_FILTER_OUT_EVENT_SOURCES`, lowercased.
    pub filter_out_sources: Vec<String>,
    /// `SENTRY_K8S_GLOBAL_TAG_<key>=<value>`: a tag on every event.
    pub global_tags: BTreeMap<String, String>,
    /// `SENTRY_K8S_CLUSTER_NAME`: tag `cluster`, and part of the grouping.
    pub cluster_name: Option<String>,
    /// `SENTRY_K8S_DRY_RUN`: print events instead of sending them, even with a DSN.
    pub dry_run: bool,
    /// `SENTRY_K8S_HTTP_ADDR` (default `0.0.0.0:8080`; empty disables): health and metrics.
    pub http_addr: Option<SocketAddr>,
    /// `SENTRY_K8S_SHUTDOWN_TIMEOUT` (default `5s`): how long SIGTERM waits for delivery.
    pub shutdown_timeout: Duration,
    /// `SENTRY_K8S_QUEUE_SIZE` (default 1000): envelopes waiting for delivery.
    pub queue_size: NonZeroUsize,
    /// `SENTRY_K8S_QUEUE_TIMEOUT` (default `5m`): how long the pipeline waits for room in
    /// a full queue before dropping an event (counted).
    pub queue_timeout: Duration,
    /// `SENTRY_K8S_SEND_CONCURRENCY` (default 4): parallel requests to Sentry.
    pub send_concurrency: NonZeroUsize,
    /// `SENTRY_K8S_EVENT_TTL` (default `1h`, the apiserver's `--event-ttl`).
    pub event_ttl: Duration,
    /// `SENTRY_K8S_DEDUP_CAPACITY` (default 100000): events remembered to suppress resends.
    pub dedup_capacity: NonZeroUsize,
    /// `SENTRY_K8S_BREADCRUMBS` (default 20): earlier events attached to each reported one.
    pub breadcrumbs: usize,
    /// `SENTRY_K8S_BREADCRUMB_WORKLOADS` (default 5000): workloads whose events are kept
    /// for breadcrumbs (least recently active evicted first).
    pub breadcrumb_workloads: NonZeroUsize,
    /// `SENTRY_K8S_BREADCRUMBS_PER_WORKLOAD` (default 50): events kept per workload.
    pub breadcrumbs_per_workload: NonZeroUsize,
    /// `SENTRY_K8S_OWNER_CACHE_SIZE` (default 10000): objects (and namespaces, for their
    /// DSN annotation) whose metadata is cached.
    pub owner_cache_size: NonZeroUsize,
    /// `SENTRY_K8S_OWNER_CACHE_TTL` (default `5m`): when cached owner metadata is re-read.
    pub owner_cache_ttl: Duration,
    /// `SENTRY_K8S_LOOKUP_CONCURRENCY` (default 8): owner lookups in flight at once.
    pub lookup_concurrency: NonZeroUsize,
    /// `HOSTNAME`: the `agent_hostname` tag.
    pub hostname: String,
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

/// The raw variables, as envy reads them (it lowercases names before matching).
#[derive(Deserialize, Default)]
struct Env {
    sentry_dsn: Option<String>,
    sentry_environment: Option<String>,
    sentry_release: Option<String>,
    sentry_k8s_watch_namespaces: Option<String>,
    sentry_k8s_watch_historical: Option<String>,
    sentry_k8s_cluster_config_type: Option<String>,
    sentry_k8s_kubeconfig_path: Option<String>,
    sentry_k8s_log_level: Option<String>,
    sentry_k8s_log_format: Option<String>,
    sentry_k8s_monitor_cronjobs: Option<String>,
    sentry_k8s_custom_dsns: Option<String>,
    sentry_k8s_filter_out_event_reasons: Option<String>,
    sentry_k8s_filter_out_event_sources: Option<String>,
    sentry_k8s_cluster_name: Option<String>,
    sentry_k8s_dry_run: Option<String>,
    sentry_k8s_http_addr: Option<String>,
    sentry_k8s_shutdown_timeout: Option<String>,
    sentry_k8s_queue_size: Option<String>,
    sentry_k8s_queue_timeout: Option<String>,
    sentry_k8s_send_concurrency: Option<String>,
    sentry_k8s_event_ttl: Option<String>,
    sentry_k8s_dedup_capacity: Option<String>,
    sentry_k8s_service_account_dir: Option<String>,
    sentry_k8s_breadcrumbs: Option<String>,
    sentry_k8s_breadcrumb_workloads: Option<String>,
    sentry_k8s_breadcrumbs_per_workload: Option<String>,
    sentry_k8s_owner_cache_size: Option<String>,
    sentry_k8s_owner_cache_ttl: Option<String>,
    sentry_k8s_lookup_concurrency: Option<String>,
    kubernetes_service_host: Option<String>,
    kubernetes_service_port: Option<String>,
    kubeconfig: Option<String>,
    rust_log: Option<String>,
    hostname: Option<String>,
    home: Option<String>,
}

/// Every `SENTRY_K8S_*` variable the agent reads (the global-tag prefix aside).
pub const AGENT_VARIABLES: &[&str] = &[
    "SENTRY_K8S_WATCH_NAMESPACES",
    "SENTRY_K8S_WATCH_HISTORICAL",
    "SENTRY_K8S_CLUSTER_CONFIG_TYPE",
    "SENTRY_K8S_KUBECONFIG_PATH",
    "SENTRY_K8S_LOG_LEVEL",
    "SENTRY_K8S_LOG_FORMAT",
    "SENTRY_K8S_MONITOR_CRONJOBS",
    "SENTRY_K8S_CUSTOM_DSNS",
    "SENTRY_K8S_FILTER_OUT_EVENT_REASONS",
    "SENTRY_K8S_FILTER_OUT_EVENT_SOURCES",
    "SENTRY_K8S_CLUSTER_NAME",
    "SENTRY_K8S_DRY_RUN",
    "SENTRY_K8S_HTTP_ADDR",
    "SENTRY_K8S_SHUTDOWN_TIMEOUT",
    "SENTRY_K8S_QUEUE_SIZE",
    "SENTRY_K8S_QUEUE_TIMEOUT",
    "SENTRY_K8S_SEND_CONCURRENCY",
    "SENTRY_K8S_EVENT_TTL",
    "SENTRY_K8S_DEDUP_CAPACITY",
    "SENTRY_K8S_SERVICE_ACCOUNT_DIR",
    "SENTRY_K8S_BREADCRUMBS",
    "SENTRY_K8S_BREADCRUMB_WORKLOADS",
    "SENTRY_K8S_BREADCRUMBS_PER_WORKLOAD",
    "SENTRY_K8S_OWNER_CACHE_SIZE",
    "SENTRY_K8S_OWNER_CACHE_TTL",
    "SENTRY_K8S_LOOKUP_CONCURRENCY",
];

const GLOBAL_TAG_PREFIX: &str = "SENTRY_K8S_GLOBAL_TAG_";

/// The spellings a variable takes when Markdown eats its underscores: the first pair
/// (`SENTRYK8SWATCH_NAMESPACES`) or all of them (`SENTRYK8SCLUSTERCONFIGTYPE`).
pub fn aliases(canonical: &str) -> [String; 2] {
    let first_two = canonical.replacen('_', "", 2);
    let all = canonical.replace('_', "");
    [first_two, all]
}

/// Booleans as the reference agent reads them, plus the usual negatives.
pub fn parse_bool(variable: &str, value: &str) -> Result<bool, ConfigError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(ConfigError::new(
            variable,
            value,
            "expected a boolean: 1/true/yes/on or 0/false/no/off (or empty)",
        )),
    }
}

/// `90`, `90s`, `500ms`, `5m`, `1h`.
pub fn parse_duration(variable: &str, value: &str) -> Result<Duration, ConfigError> {
    let v = value.trim();
    let (number, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: f64 = number.parse().map_err(|_| {
        ConfigError::new(
            variable,
            value,
            "expected a duration such as 30s, 500ms, 5m or 1h",
        )
    })?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => {
            return Err(ConfigError::new(
                variable,
                value,
                "unknown unit; use ms, s, m or h",
            ));
        }
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(ConfigError::new(
            variable,
            value,
            "must be a non-negative duration",
        ));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A count setting: `usize` (0 allowed) or `NonZeroUsize` (at least 1).
trait Count: FromStr {
    const LEAST: usize;
}

impl Count for usize {
    const LEAST: usize = 0;
}

impl Count for NonZeroUsize {
    const LEAST: usize = 1;
}

/// A whole number, at least [`Count::LEAST`]; `default` when unset or empty.
fn count_or<T: Count>(
    variable: &str,
    value: &Option<String>,
    default: T,
) -> Result<T, ConfigError> {
    let Some(value) = value.as_deref().filter(|v| !v.trim().is_empty()) else {
        return Ok(default);
    };
    value.trim().parse().map_err(|_| {
        ConfigError::new(
            variable,
            value,
            format!("expected a whole number >= {}", T::LEAST),
        )
    })
}

const fn at_least_one(n: usize) -> NonZeroUsize {
    match NonZeroUsize::new(n) {
        Some(n) => n,
        None => panic!("a default must be at least 1"),
    }
}

/// One of a closed set of names (case-insensitive; unset is `""`).
fn one_of<T: Copy>(
    variable: &str,
    value: &Option<String>,
    names: &[(&str, T)],
    expected: &str,
) -> Result<T, ConfigError> {
    let raw = value.as_deref().unwrap_or("");
    let wanted = raw.trim().to_ascii_lowercase();
    names
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, v)| *v)
        .ok_or_else(|| ConfigError::new(variable, raw, expected))
}

/// A DNS-1123 label: what Kubernetes accepts as a namespace name.
pub fn is_namespace_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

fn parse_namespaces(value: &str) -> Result<Namespaces, ConfigError> {
    const VAR: &str = "SENTRY_K8S_WATCH_NAMESPACES";
    let mut list: Vec<String> = Vec::new();
    let mut all = false;
    for raw in value.split(',') {
        let ns = raw.trim();
        if ns.is_empty() {
            continue;
        }
        if ns == "__all__" {
            all = true;
        } else if !is_namespace_name(ns) {
            return Err(ConfigError::new(
                VAR,
                value,
                format!(
                    "{ns:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
                ),
            ));
        } else if !list.iter().any(|seen| seen == ns) {
            list.push(ns.to_string());
        }
    }
    Ok(if all {
        Namespaces::All
    } else if list.is_empty() {
        Namespaces::List(vec!["default".into()])
    } else {
        Namespaces::List(list)
    })
}

fn parse_list_lowercase(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
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

/// Warnings found while loading (aliases used, unknown variables); logged once logging is up.
pub type Notices = Vec<String>;

impl Config {
    /// Loads from the process environment.
    pub fn from_env() -> Result<(Self, Notices), ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Loads from name/value pairs (tests pass their own).
    pub fn from_vars<I, K, V>(vars: I) -> Result<(Self, Notices), ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let vars: BTreeMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let mut notices = Vec::new();
        let mut resolved = vars.clone();
        for canonical in AGENT_VARIABLES {
            for alias in aliases(canonical) {
                let Some(value) = vars.get(&alias) else {
                    continue;
                };
                match vars.get(*canonical) {
                    Some(_) => notices.push(format!(
                        "both {canonical} and its alias {alias} are set; using {canonical}"
                    )),
                    None => {
                        notices.push(format!(
                            "{alias} is read as {canonical}; prefer the canonical name"
                        ));
                        resolved.insert(canonical.to_string(), value.clone());
                    }
                }
            }
        }
        let known_aliases: Vec<String> = AGENT_VARIABLES.iter().flat_map(|v| aliases(v)).collect();
        for name in vars.keys() {
            let ours = name.starts_with("SENTRY_K8S_") || name.starts_with("SENTRYK8S");
            if ours
                && !name.starts_with(GLOBAL_TAG_PREFIX)
                && !AGENT_VARIABLES.contains(&name.as_str())
                && !known_aliases.contains(name)
            {
                notices.push(format!(
                    "{name} is not a variable this agent reads; ignored"
                ));
            }
        }
        let global_tags = resolved
            .iter()
            .filter_map(|(k, v)| {
                let key = k.strip_prefix(GLOBAL_TAG_PREFIX)?;
                (!key.is_empty()).then(|| (key.to_string(), v.clone()))
            })
            .collect();
        let env: Env = envy::from_iter(resolved)
            .map_err(|e| ConfigError::new("environment", "", e.to_string()))?;
        Self::validate(env, global_tags).map(|config| (config, notices))
    }

    fn validate(env: Env, global_tags: BTreeMap<String, String>) -> Result<Self, ConfigError> {
        let dsn = match non_empty(env.sentry_dsn.clone()) {
            None => None,
            Some(raw) => Some(Dsn::from_str(&raw).map_err(|e| {
                ConfigError::new(
                    "SENTRY_DSN",
                    &redact_dsn(&raw),
                    format!("not a valid DSN: {e}"),
                )
            })?),
        };
        let flag = |var: &str, v: &Option<String>| parse_bool(var, v.as_deref().unwrap_or(""));
        let cluster_config = one_of(
            "SENTRY_K8S_CLUSTER_CONFIG_TYPE",
            &env.sentry_k8s_cluster_config_type,
            &[
                ("", ClusterConfigType::Auto),
                ("auto", ClusterConfigType::Auto),
                ("in-cluster", ClusterConfigType::InCluster),
                ("out-cluster", ClusterConfigType::OutCluster),
            ],
            "expected auto, in-cluster or out-cluster",
        )?;
        let (kubeconfig, kubeconfig_source) = match (
            non_empty(env.sentry_k8s_kubeconfig_path),
            non_empty(env.kubeconfig),
        ) {
            (Some(path), _) => (
                vec![expand_home(&path, env.home.as_deref())],
                "SENTRY_K8S_KUBECONFIG_PATH",
            ),
            (None, Some(list)) => (
                list.split(':')
                    .filter(|p| !p.is_empty())
                    .map(|p| expand_home(p, env.home.as_deref()))
                    .collect(),
                "KUBECONFIG",
            ),
            (None, None) => (
                env.home
                    .as_deref()
                    .map(|h| PathBuf::from(h).join(".kube").join("config"))
                    .into_iter()
                    .collect(),
                "SENTRY_K8S_KUBECONFIG_PATH",
            ),
        };
        let log_format = one_of(
            "SENTRY_K8S_LOG_FORMAT",
            &env.sentry_k8s_log_format,
            &[
                ("", LogFormat::Text),
                ("text", LogFormat::Text),
                ("console", LogFormat::Text),
                ("json", LogFormat::Json),
            ],
            "expected text or json",
        )?;
        let http_addr = match env.sentry_k8s_http_addr.as_deref().map(str::trim) {
            None => Some(SocketAddr::from(([0, 0, 0, 0], 8080))),
            Some("") => None,
            Some(v) => Some(v.parse().map_err(|_| {
                ConfigError::new(
                    "SENTRY_K8S_HTTP_ADDR",
                    v,
                    "expected host:port, e.g. 0.0.0.0:8080 (empty disables)",
                )
            })?),
        };
        let duration_or = |var: &str, v: &Option<String>, default: Duration| match v {
            Some(v) if !v.trim().is_empty() => parse_duration(var, v),
            _ => Ok(default),
        };
        for key in global_tags.keys() {
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
            {
                return Err(ConfigError::new(
                    &format!("{GLOBAL_TAG_PREFIX}{key}"),
                    "",
                    "a tag key may only contain letters, digits, '_', '.', ':' and '-'",
                ));
            }
        }
        Ok(Self {
            dsn,
            environment: non_empty(env.sentry_environment),
            release: non_empty(env.sentry_release),
            namespaces: parse_namespaces(
                env.sentry_k8s_watch_namespaces
                    .as_deref()
                    .unwrap_or("default"),
            )?,
            historical: flag(
                "SENTRY_K8S_WATCH_HISTORICAL",
                &env.sentry_k8s_watch_historical,
            )?,
            cluster_config,
            kubeconfig,
            kubeconfig_source,
            in_cluster: InCluster {
                service_host: non_empty(env.kubernetes_service_host),
                service_port: non_empty(env.kubernetes_service_port),
                service_account_dir: PathBuf::from(
                    non_empty(env.sentry_k8s_service_account_dir)
                        .unwrap_or_else(|| "/var/run/secrets/kubernetes.io/serviceaccount".into()),
                ),
            },
            log_level: one_of(
                "SENTRY_K8S_LOG_LEVEL",
                &env.sentry_k8s_log_level,
                &[
                    ("", LogLevel::Info),
                    ("info", LogLevel::Info),
                    ("trace", LogLevel::Trace),
                    ("debug", LogLevel::Debug),
                    ("warn", LogLevel::Warn),
                    ("warning", LogLevel::Warn),
                    // zerolog's fatal and panic levels still log errors.
                    ("error", LogLevel::Error),
                    ("fatal", LogLevel::Error),
                    ("panic", LogLevel::Error),
                    ("disabled", LogLevel::Off),
                    ("off", LogLevel::Off),
                    ("none", LogLevel::Off),
                ],
                "expected one of trace, debug, info, warn, error, fatal, panic, disabled",
            )?,
            log_format,
            rust_log: non_empty(env.rust_log),
            monitor_cronjobs: flag(
                "SENTRY_K8S_MONITOR_CRONJOBS",
                &env.sentry_k8s_monitor_cronjobs,
            )?,
            custom_dsns: flag("SENTRY_K8S_CUSTOM_DSNS", &env.sentry_k8s_custom_dsns)?,
            filter_out_reasons: parse_list_lowercase(
                env.sentry_k8s_filter_out_event_reasons
                    .as_deref()
                    .unwrap_or("DockerStart,KubeletStart,NodeSysctlChange,ContainerdStart"),
            ),
            filter_out_sources: parse_list_lowercase(
                env.sentry_k8s_filter_out_event_sources
                    .as_deref()
                    .unwrap_or(""),
            ),
            global_tags,
            cluster_name: non_empty(env.sentry_k8s_cluster_name),
            dry_run: flag("SENTRY_K8S_DRY_RUN", &env.sentry_k8s_dry_run)?,
            http_addr,
            shutdown_timeout: duration_or(
                "SENTRY_K8S_SHUTDOWN_TIMEOUT",
                &env.sentry_k8s_shutdown_timeout,
                Duration::from_secs(5),
            )?,
            queue_size: count_or(
                "SENTRY_K8S_QUEUE_SIZE",
                &env.sentry_k8s_queue_size,
                at_least_one(1000),
            )?,
            queue_timeout: duration_or(
                "SENTRY_K8S_QUEUE_TIMEOUT",
                &env.sentry_k8s_queue_timeout,
                Duration::from_secs(300),
            )?,
            send_concurrency: count_or(
                "SENTRY_K8S_SEND_CONCURRENCY",
                &env.sentry_k8s_send_concurrency,
                at_least_one(4),
            )?,
            event_ttl: duration_or(
                "SENTRY_K8S_EVENT_TTL",
                &env.sentry_k8s_event_ttl,
                Duration::from_secs(3600),
            )?,
            dedup_capacity: count_or(
                "SENTRY_K8S_DEDUP_CAPACITY",
                &env.sentry_k8s_dedup_capacity,
                at_least_one(100_000),
            )?,
            breadcrumbs: count_or("SENTRY_K8S_BREADCRUMBS", &env.sentry_k8s_breadcrumbs, 20)?,
            breadcrumb_workloads: count_or(
                "SENTRY_K8S_BREADCRUMB_WORKLOADS",
                &env.sentry_k8s_breadcrumb_workloads,
                at_least_one(5000),
            )?,
            breadcrumbs_per_workload: count_or(
                "SENTRY_K8S_BREADCRUMBS_PER_WORKLOAD",
                &env.sentry_k8s_breadcrumbs_per_workload,
                at_least_one(50),
            )?,
            owner_cache_size: count_or(
                "SENTRY_K8S_OWNER_CACHE_SIZE",
                &env.sentry_k8s_owner_cache_size,
                at_least_one(10_000),
            )?,
            owner_cache_ttl: duration_or(
                "SENTRY_K8S_OWNER_CACHE_TTL",
                &env.sentry_k8s_owner_cache_ttl,
                Duration::from_secs(300),
            )?,
            lookup_concurrency: count_or(
                "SENTRY_K8S_LOOKUP_CONCURRENCY",
                &env.sentry_k8s_lookup_concurrency,
                at_least_one(8),
            )?,
            hostname: non_empty(env.hostname)
                .or_else(|| {
                    hostname::get()
                        .ok()
                        .map(|h| h.to_string_lossy().into_owned())
                })
                .unwrap_or_else(|| "unknown".into()),
        })
    }

    /// Whether events are printed instead of sent.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run || self.dsn.is_none()
    }
}

fn expand_home(path: &str, home: Option<&str>) -> PathBuf {
    match (path.strip_prefix("~/"), home) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::from_vars(vars.iter().copied()).map(|(c, _)| c)
    }

    fn err(vars: &[(&str, &str)]) -> ConfigError {
        load(vars).expect_err("should be rejected")
    }

    #[test]
    fn defaults_match_the_reference_agent() {
        let c = load(&[("HOME", "/home/op"), ("HOSTNAME", "agent-0")]).unwrap();
        assert!(c.dsn.is_none() && c.is_dry_run());
        assert_eq!(c.namespaces, Namespaces::List(vec!["default".into()]));
        assert!(!c.historical && !c.monitor_cronjobs && !c.custom_dsns);
        assert_eq!(c.cluster_config, ClusterConfigType::Auto);
        assert_eq!(c.kubeconfig, vec![PathBuf::from("/home/op/.kube/config")]);
        assert_eq!(c.log_level, LogLevel::Info);
        assert_eq!(
            c.filter_out_reasons,
            [
                "dockerstart",
                "kubeletstart",
                "nodesysctlchange",
                "containerdstart"
            ]
        );
        assert!(c.filter_out_sources.is_empty());
        assert_eq!(c.http_addr, Some("0.0.0.0:8080".parse().unwrap()));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.hostname, "agent-0");
    }

    #[test]
    fn booleans_accept_the_documented_spellings_only() {
        for v in ["1", "true", "YES", " on "] {
            assert!(
                load(&[("SENTRY_K8S_WATCH_HISTORICAL", v)])
                    .unwrap()
                    .historical,
                "{v}"
            );
        }
        for v in ["0", "false", "No", "off", ""] {
            assert!(
                !load(&[("SENTRY_K8S_WATCH_HISTORICAL", v)])
                    .unwrap()
                    .historical,
                "{v}"
            );
        }
        let e = err(&[("SENTRY_K8S_WATCH_HISTORICAL", "maybe")]);
        assert_eq!(e.variable, "SENTRY_K8S_WATCH_HISTORICAL");
        assert_eq!(e.to_string().lines().count(), 1);
        assert!(
            e.to_string()
                .starts_with("SENTRY_K8S_WATCH_HISTORICAL=\"maybe\": ")
        );
    }

    #[test]
    fn namespaces_are_validated_and_deduplicated() {
        let c = load(&[("SENTRY_K8S_WATCH_NAMESPACES", "prod, staging,prod,,")]).unwrap();
        assert_eq!(
            c.namespaces,
            Namespaces::List(vec!["prod".into(), "staging".into()])
        );
        let c = load(&[("SENTRY_K8S_WATCH_NAMESPACES", "prod,__all__")]).unwrap();
        assert_eq!(c.namespaces, Namespaces::All);
        let e = err(&[("SENTRY_K8S_WATCH_NAMESPACES", "prod,Bad_NS")]);
        assert_eq!(e.variable, "SENTRY_K8S_WATCH_NAMESPACES");
        assert!(e.reason.contains("\"Bad_NS\""));
    }

    #[test]
    fn markdown_mangled_aliases_work_and_the_canonical_name_wins() {
        let (c, notices) = Config::from_vars([
            ("SENTRYK8SWATCH_NAMESPACES", "a,b"),
            ("SENTRYK8SCLUSTERCONFIGTYPE", "out-cluster"),
            ("SENTRYK8SLOG_LEVEL", "debug"),
            ("SENTRYK8SKUBECONFIG_PATH", "/tmp/kc"),
            ("SENTRYK8SWATCH_HISTORICAL", "yes"),
        ])
        .unwrap();
        assert_eq!(c.namespaces, Namespaces::List(vec!["a".into(), "b".into()]));
        assert_eq!(c.cluster_config, ClusterConfigType::OutCluster);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.kubeconfig, vec![PathBuf::from("/tmp/kc")]);
        assert!(c.historical);
        assert_eq!(notices.len(), 5);

        let c = load(&[
            ("SENTRYK8SWATCH_NAMESPACES", "alias"),
            ("SENTRY_K8S_WATCH_NAMESPACES", "canonical"),
        ])
        .unwrap();
        assert_eq!(c.namespaces, Namespaces::List(vec!["canonical".into()]));
    }

    #[test]
    fn kubeconfig_falls_back_to_the_kubeconfig_list() {
        let c = load(&[("KUBECONFIG", "/a:/b"), ("HOME", "/h")]).unwrap();
        assert_eq!(c.kubeconfig, vec![PathBuf::from("/a"), PathBuf::from("/b")]);
        assert_eq!(c.kubeconfig_source, "KUBECONFIG");
        let c = load(&[
            ("KUBECONFIG", "/a"),
            ("SENTRY_K8S_KUBECONFIG_PATH", "~/kc"),
            ("HOME", "/h"),
        ])
        .unwrap();
        assert_eq!(c.kubeconfig, vec![PathBuf::from("/h/kc")]);
    }

    #[test]
    fn every_bad_value_names_its_variable() {
        let cases: &[(&str, &str)] = &[
            ("SENTRY_K8S_CLUSTER_CONFIG_TYPE", "inside"),
            ("SENTRY_K8S_LOG_LEVEL", "verbose"),
            ("SENTRY_K8S_LOG_FORMAT", "xml"),
            ("SENTRY_K8S_MONITOR_CRONJOBS", "2"),
            ("SENTRY_K8S_CUSTOM_DSNS", "y"),
            ("SENTRY_K8S_DRY_RUN", "sure"),
            ("SENTRY_K8S_HTTP_ADDR", "8080"),
            ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "soon"),
            ("SENTRY_K8S_QUEUE_SIZE", "0"),
            ("SENTRY_K8S_QUEUE_TIMEOUT", "5 minutes"),
            ("SENTRY_K8S_SEND_CONCURRENCY", "-1"),
            ("SENTRY_K8S_EVENT_TTL", "1d"),
            ("SENTRY_K8S_DEDUP_CAPACITY", "lots"),
            ("SENTRY_DSN", "not a dsn"),
        ];
        for (var, value) in cases {
            assert_eq!(err(&[(var, value)]).variable, *var, "{var}={value}");
        }
        let e = err(&[("SENTRY_K8S_GLOBAL_TAG_bad key", "x")]);
        assert_eq!(e.variable, "SENTRY_K8S_GLOBAL_TAG_bad key");
    }

    #[test]
    fn a_bad_dsn_error_does_not_print_the_key() {
        let e = err(&[("SENTRY_DSN", "https://secretkey@sentry.example.com")]);
        assert!(!e.to_string().contains("secretkey"), "{e}");
    }

    #[test]
    fn fatal_and_panic_map_to_error_and_disabled_to_off() {
        assert_eq!(
            load(&[("SENTRY_K8S_LOG_LEVEL", "fatal")])
                .unwrap()
                .log_level,
            LogLevel::Error
        );
        assert_eq!(
            load(&[("SENTRY_K8S_LOG_LEVEL", "PANIC")])
                .unwrap()
                .log_level,
            LogLevel::Error
        );
        assert_eq!(
            load(&[("SENTRY_K8S_LOG_LEVEL", "disabled")])
                .unwrap()
                .log_level,
            LogLevel::Off
        );
    }

    #[test]
    fn global_tags_and_filters_are_read() {
        let c = load(&[
            ("SENTRY_K8S_GLOBAL_TAG_team", "payments"),
            ("SENTRY_K8S_GLOBAL_TAG_region", "eu-1"),
            ("SENTRY_K8S_FILTER_OUT_EVENT_REASONS", "BackOff, Unhealthy"),
            ("SENTRY_K8S_FILTER_OUT_EVENT_SOURCES", "Kubelet"),
        ])
        .unwrap();
        assert_eq!(
            c.global_tags.get("team").map(String::as_str),
            Some("payments")
        );
        assert_eq!(c.filter_out_reasons, ["backoff", "unhealthy"]);
        assert_eq!(c.filter_out_sources, ["kubelet"]);
    }

    #[test]
    fn unknown_agent_variables_are_reported_not_fatal() {
        let (_, notices) = Config::from_vars([("SENTRY_K8S_WATCH_NAMESPACE", "x")]).unwrap();
        assert!(
            notices
                .iter()
                .any(|n| n.contains("SENTRY_K8S_WATCH_NAMESPACE ")),
            "{notices:?}"
        );
    }

    #[test]
    fn durations_accept_units() {
        assert_eq!(
            parse_duration("X", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_duration("X", "90").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("X", "2m").unwrap(), Duration::from_secs(120));
        assert_eq!(
            parse_duration("X", "1h").unwrap(),
            Duration::from_secs(3600)
        );
    }
}
