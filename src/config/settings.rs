//! The one declaration of every variable the agent reads: name, default, parser, one-line
//! doc, and whether its value is a secret. Parsing, validation messages, the aliases, the
//! unknown-variable warning, `--help` and the README's table all come from here.
//!
//! Adding a variable is one line here, then its use.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::time::Duration;

use sentry::types::Dsn;

use super::parse;
use super::{ClusterConfigType, ConfigError, LogFormat, LogLevel, Namespaces, Vars};

/// Who sets a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The operator: `SENTRY_*` variables (Markdown-mangled aliases accepted).
    Operator,
    /// Kubernetes or the system (`KUBERNETES_SERVICE_HOST`, `HOME`, …).
    Platform,
    /// Read by a library the agent uses, not by the agent itself (documented only).
    Library,
}

/// One environment variable.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub name: &'static str,
    /// The text the parser reads when the variable is unset (or blank, see `blank_is_value`).
    pub default: &'static str,
    /// How `--help` and the README show the default, when the text alone would mislead.
    pub shown_default: Option<&'static str>,
    pub doc: &'static str,
    /// Never shown in logs or errors (a DSN's key).
    pub secret: bool,
    /// A blank value means something (`SENTRY_K8S_HTTP_ADDR=` disables the server)
    /// instead of the default.
    pub blank_is_value: bool,
    pub origin: Origin,
}

impl Setting {
    pub const fn new(name: &'static str, default: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            default,
            shown_default: None,
            doc,
            secret: false,
            blank_is_value: false,
            origin: Origin::Operator,
        }
    }

    #[must_use]
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    #[must_use]
    pub const fn blank_is_value(mut self) -> Self {
        self.blank_is_value = true;
        self
    }

    #[must_use]
    pub const fn shown(mut self, default: &'static str) -> Self {
        self.shown_default = Some(default);
        self
    }

    #[must_use]
    pub const fn platform(mut self) -> Self {
        self.origin = Origin::Platform;
        self
    }

    #[must_use]
    pub const fn library(mut self) -> Self {
        self.origin = Origin::Library;
        self
    }

    /// The one-line doc without the leading space a `///` comment leaves.
    pub fn doc(&self) -> &'static str {
        self.doc.trim()
    }

    /// The default as documentation shows it.
    pub fn default_for_docs(&self) -> String {
        match (self.shown_default, self.default) {
            (Some(shown), _) => shown.to_string(),
            (None, "") => "empty".to_string(),
            (None, "off") => "off".to_string(),
            (None, value) => format!("`{value}`"),
        }
    }

    /// The spellings this variable takes when Markdown eats its underscores: the first pair
    /// (`SENTRYK8SWATCH_NAMESPACES`) or all of them (`SENTRYK8SCLUSTERCONFIGTYPE`). Only the
    /// agent's own `SENTRY_K8S_*` variables have them.
    pub fn aliases(&self) -> Vec<String> {
        if !self.name.starts_with("SENTRY_K8S_") {
            return Vec::new();
        }
        vec![self.name.replacen('_', "", 2), self.name.replace('_', "")]
    }
}

/// `SENTRY_K8S_GLOBAL_TAG_<key>=<value>`: tag `<key>` on every event.
pub const GLOBAL_TAG_PREFIX: &str = "SENTRY_K8S_GLOBAL_TAG_";

/// Declares the variables the agent parses: the [`SETTINGS`] table and the [`Config`]
/// struct, one field per variable, filled by [`Config::from_table`].
macro_rules! settings {
    ($(
        #[doc = $doc:literal]
        $field:ident: $ty:ty = $name:literal ($default:literal) $parse:path
            $(, $flag:ident $(($arg:literal))?)* ;
    )*) => {
        /// Every variable the agent parses, in the order `--help` and the README list them.
        pub const SETTINGS: &[Setting] = &[
            $( Setting::new($name, $default, $doc) $(.$flag($($arg)?))* ),*
        ];

        /// Everything the agent is told, validated. Built by [`Config::from_env`] (the
        /// process environment) or [`Config::from_vars`] (tests). Each field is the variable
        /// its doc names, parsed.
        #[derive(Clone, Debug)]
        pub struct Config {
            $( #[doc = concat!("`", $name, "`: ", $doc)] pub $field: $ty, )*
            /// `SENTRY_K8S_GLOBAL_TAG_<key>=<value>`: a tag on every event.
            pub global_tags: BTreeMap<String, String>,
        }

        impl Config {
            pub(super) fn from_table(vars: &Vars) -> Result<Self, ConfigError> {
                Ok(Self {
                    $( $field: vars.read(
                        &(Setting::new($name, $default, $doc) $(.$flag($($arg)?))*),
                        $parse,
                    )?, )*
                    global_tags: vars.global_tags()?,
                })
            }
        }
    };
}

settings! {
    /// where events go; empty: dry run (events printed as JSON lines)
    dsn: Option<Dsn> = "SENTRY_DSN" ("") parse::dsn, secret;
    /// Sentry environment of every event
    environment: Option<String> = "SENTRY_ENVIRONMENT" ("") parse::text;
    /// Sentry release of every event
    release: Option<String> = "SENTRY_RELEASE" ("") parse::text;
    /// comma-separated namespaces, or `__all__` for one cluster-wide watch; duplicates are watched once
    namespaces: Namespaces = "SENTRY_K8S_WATCH_NAMESPACES" ("default") parse::namespaces;
    /// report events already stored at start
    historical: bool = "SENTRY_K8S_WATCH_HISTORICAL" ("off") parse::boolean;
    /// `auto` (in-cluster when the service account is mounted, else kubeconfig), `in-cluster`, `out-cluster`
    cluster_config: ClusterConfigType = "SENTRY_K8S_CLUSTER_CONFIG_TYPE" ("auto") parse::cluster_config_type;
    /// kubeconfig for out-of-cluster use (current context)
    kubeconfig_path: Option<String> = "SENTRY_K8S_KUBECONFIG_PATH" ("") parse::text, shown("`KUBECONFIG`, else `~/.kube/config`");
    /// `trace`, `debug`, `info`, `warn`, `error`, `fatal`/`panic` (= error), `disabled`; `RUST_LOG` overrides it
    log_level: LogLevel = "SENTRY_K8S_LOG_LEVEL" ("info") parse::log_level;
    /// `text` or `json` (one JSON object per line)
    log_format: LogFormat = "SENTRY_K8S_LOG_FORMAT" ("text") parse::log_format;
    /// Sentry Crons check-ins for CronJob runs, monitors upserted with the CronJob's schedule and time zone
    monitor_cronjobs: bool = "SENTRY_K8S_MONITOR_CRONJOBS" ("off") parse::boolean;
    /// per-object DSN from the annotation `k8s.sentry.io/dsn`
    custom_dsns: bool = "SENTRY_K8S_CUSTOM_DSNS" ("off") parse::boolean;
    /// reasons never reported (case-insensitive; setting it replaces the default)
    filter_out_reasons: Vec<String> = "SENTRY_K8S_FILTER_OUT_EVENT_REASONS" ("DockerStart,KubeletStart,NodeSysctlChange,ContainerdStart") parse::lowercase_list, blank_is_value;
    /// source components never reported (case-insensitive)
    filter_out_sources: Vec<String> = "SENTRY_K8S_FILTER_OUT_EVENT_SOURCES" ("") parse::lowercase_list;
    /// tag `cluster`, and the first part of every fingerprint
    cluster_name: Option<String> = "SENTRY_K8S_CLUSTER_NAME" ("") parse::text;
    /// print events instead of sending them, even with a DSN
    dry_run: bool = "SENTRY_K8S_DRY_RUN" ("off") parse::boolean;
    /// where `/healthz`, `/readyz` and `/metrics` listen; empty disables
    http_addr: Option<SocketAddr> = "SENTRY_K8S_HTTP_ADDR" ("0.0.0.0:8080") parse::listen_address, blank_is_value;
    /// on SIGTERM/SIGINT, how long to wait for queued events to be delivered
    shutdown_timeout: Duration = "SENTRY_K8S_SHUTDOWN_TIMEOUT" ("5s") parse::duration;
    /// envelopes waiting for delivery (the memory bound of delivery)
    queue_size: NonZeroUsize = "SENTRY_K8S_QUEUE_SIZE" ("1000") parse::positive;
    /// how long the pipeline waits for room in a full queue before dropping an event (counted)
    queue_timeout: Duration = "SENTRY_K8S_QUEUE_TIMEOUT" ("5m") parse::duration;
    /// requests to Sentry in flight
    send_concurrency: NonZeroUsize = "SENTRY_K8S_SEND_CONCURRENCY" ("4") parse::positive;
    /// the apiserver's `--event-ttl`; remembered events expire 10 minutes after it
    event_ttl: Duration = "SENTRY_K8S_EVENT_TTL" ("1h") parse::duration;
    /// events remembered for deduplication (least recently seen evicted first, counted)
    dedup_capacity: NonZeroUsize = "SENTRY_K8S_DEDUP_CAPACITY" ("100000") parse::positive;
    /// earlier events attached to each reported one (0: none)
    breadcrumbs: usize = "SENTRY_K8S_BREADCRUMBS" ("20") parse::count;
    /// workloads whose events are kept for breadcrumbs (least recently active evicted first, counted)
    breadcrumb_workloads: NonZeroUsize = "SENTRY_K8S_BREADCRUMB_WORKLOADS" ("5000") parse::positive;
    /// events kept per workload (oldest dropped first, counted)
    breadcrumbs_per_workload: NonZeroUsize = "SENTRY_K8S_BREADCRUMBS_PER_WORKLOAD" ("50") parse::positive;
    /// objects (and, with custom DSNs, namespaces) whose metadata is cached (least recently used evicted, counted)
    owner_cache_size: NonZeroUsize = "SENTRY_K8S_OWNER_CACHE_SIZE" ("10000") parse::positive;
    /// when cached owner metadata (and DSN annotations) are read again
    owner_cache_ttl: Duration = "SENTRY_K8S_OWNER_CACHE_TTL" ("5m") parse::duration;
    /// owner lookups in flight at once (events are still reported in order)
    lookup_concurrency: NonZeroUsize = "SENTRY_K8S_LOOKUP_CONCURRENCY" ("8") parse::positive;
    /// where in-cluster mode finds `token`, `ca.crt`, `namespace`
    service_account_dir: PathBuf = "SENTRY_K8S_SERVICE_ACCOUNT_DIR" ("/var/run/secrets/kubernetes.io/serviceaccount") parse::path;
    /// the API server in in-cluster mode
    service_host: Option<String> = "KUBERNETES_SERVICE_HOST" ("") parse::text, platform, shown("set by Kubernetes");
    /// the API server's port in in-cluster mode
    service_port: Option<String> = "KUBERNETES_SERVICE_PORT" ("") parse::text, platform, shown("set by Kubernetes");
    /// kubeconfig files, `:`-separated, when `SENTRY_K8S_KUBECONFIG_PATH` is unset
    kubeconfig_list: Option<String> = "KUBECONFIG" ("") parse::text, platform;
    /// where `~` in kubeconfig paths points
    home: Option<String> = "HOME" ("") parse::text, platform;
    /// the `agent_hostname` tag
    hostname_var: Option<String> = "HOSTNAME" ("") parse::text, platform, shown("the system's host name");
    /// a tracing filter for the agent's own logs; overrides `SENTRY_K8S_LOG_LEVEL`
    rust_log: Option<String> = "RUST_LOG" ("") parse::text, platform;
}

/// Variables a library reads for the agent: documented with the rest, parsed by nobody here.
pub const READ_BY_LIBRARIES: &[Setting] = &[
    Setting::new(
        "SSL_CERT_FILE",
        "",
        "a CA bundle trusted for an `https` DSN (a self-hosted Sentry with a private CA); read by the TLS library",
    )
    .library()
    .shown("the system bundle"),
    Setting::new("SSL_CERT_DIR", "", "a directory of CA certificates, likewise; read by the TLS library")
        .library()
        .shown("the system bundle"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_default_parses_and_every_name_is_declared_once() {
        let config = Config::from_vars(std::iter::empty::<(String, String)>())
            .expect("the defaults parse")
            .0;
        assert!(config.dsn.is_none());
        let mut names: Vec<&str> = SETTINGS
            .iter()
            .chain(READ_BY_LIBRARIES)
            .map(|s| s.name)
            .collect();
        let all = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all, "a variable is declared twice");
        for setting in SETTINGS.iter().chain(READ_BY_LIBRARIES) {
            assert!(!setting.doc().is_empty(), "{} has no doc", setting.name);
            assert!(!setting.doc().contains('\n'), "{}: one line", setting.name);
        }
    }
}
