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

use regex::Regex;
use sentry::types::Dsn;

use super::parse;
use super::setting::Setting;
use super::types::{
    ClusterConfigType, ConfigError, LogFormat, LogLevel, Namespaces, Notices, Switch,
};
use super::vars::Vars;

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
    environment: Option<String> = "SENTRY_ENVIRONMENT" ("") parse::environment;
    /// Sentry release of every event
    release: Option<String> = "SENTRY_RELEASE" ("") parse::release;
    /// comma-separated namespaces, or `__all__` for one cluster-wide watch; duplicates are watched once
    namespaces: Namespaces = "SENTRY_K8S_WATCH_NAMESPACES" ("default") parse::namespaces;
    /// report events (and container crashes) already stored at start
    historical: bool = "SENTRY_K8S_WATCH_HISTORICAL" ("off") parse::boolean;
    /// watch pods too, and report each container that ends with a failure (OOMKilled, a non-zero exit) once
    watch_pods: bool = "SENTRY_K8S_WATCH_PODS" ("on") parse::boolean;
    /// the last lines a crashed container wrote, attached to its report (0: none; at most 1000; RBAC `get pods/log`)
    container_logs: usize = "SENTRY_K8S_CONTAINER_LOGS" ("0") parse::log_lines;
    /// more regular expressions, one per line, whose matches in log lines and termination messages become `[Filtered]` (beside the built-in ones)
    scrub_patterns: Vec<Regex> = "SENTRY_K8S_SCRUB_PATTERNS" ("") parse::regex_list;
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
    /// reasons never reported (case-insensitive; setting it replaces the default, empty means the default)
    filter_out_reasons: Vec<String> = "SENTRY_K8S_FILTER_OUT_EVENT_REASONS" ("DockerStart,KubeletStart,NodeSysctlChange,ContainerdStart") parse::lowercase_list;
    /// source components never reported (case-insensitive)
    filter_out_sources: Vec<String> = "SENTRY_K8S_FILTER_OUT_EVENT_SOURCES" ("") parse::lowercase_list;
    /// tag `cluster`, and the first part of every fingerprint
    cluster_name: Option<String> = "SENTRY_K8S_CLUSTER_NAME" ("") parse::text;
    /// on GKE: tags `gke_cluster_name`, `gke_cluster_location`, `gke_project_name` and a `gke` context with console links, from the metadata server
    integration_gke: bool = "SENTRY_K8S_INTEGRATION_GKE_ENABLED" ("off") parse::boolean;
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
    /// bytes the queued envelopes may hold (compressed), beside their count
    queue_bytes: usize = "SENTRY_K8S_QUEUE_BYTES" ("16Mi") parse::bytes;
    /// requests to Sentry in flight
    send_concurrency: NonZeroUsize = "SENTRY_K8S_SEND_CONCURRENCY" ("4") parse::positive;
    /// the longest one request to Sentry may take, headers and body, before it is retried
    send_timeout: Duration = "SENTRY_K8S_SEND_TIMEOUT" ("30s") parse::duration;
    /// how long an envelope may wait for a destination that keeps failing before it is dropped (counted)
    delivery_max_age: Duration = "SENTRY_K8S_DELIVERY_MAX_AGE" ("1h") parse::duration;
    /// destinations (DSNs) served at once; an event for one more while all have envelopes pending is dropped (counted)
    destinations: NonZeroUsize = "SENTRY_K8S_DESTINATIONS" ("100") parse::positive;
    /// the apiserver's `--event-ttl`; remembered events expire 10 minutes after it, and container crashes older than it are history
    event_ttl: Duration = "SENTRY_K8S_EVENT_TTL" ("1h") parse::duration;
    /// events and crashed containers remembered for deduplication (least recently seen evicted first, counted)
    dedup_capacity: NonZeroUsize = "SENTRY_K8S_DEDUP_CAPACITY" ("100000") parse::positive;
    /// occurrences reported per Sentry issue in each window; the rest are counted, not sent (0: no limit)
    max_events_per_issue: usize = "SENTRY_K8S_MAX_EVENTS_PER_ISSUE" ("100") parse::count;
    /// the window of `SENTRY_K8S_MAX_EVENTS_PER_ISSUE`
    issue_window: Duration = "SENTRY_K8S_ISSUE_WINDOW" ("1h") parse::positive_duration;
    /// issues whose window is tracked (least recently seen forgotten first)
    storm_issues: NonZeroUsize = "SENTRY_K8S_STORM_ISSUES" ("10000") parse::positive;
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
    /// keep how far delivery has got in a Lease, so a restart or a new leader resumes without gaps or repeats
    checkpoint: bool = "SENTRY_K8S_CHECKPOINT" ("on") parse::boolean, shown("on");
    /// one reporting replica at a time, elected through the Lease: `auto` (on in a cluster), on or off
    leader_election: Switch = "SENTRY_K8S_LEADER_ELECTION" ("auto") parse::switch;
    /// the Lease that holds the checkpoint and the leadership
    lease_name: String = "SENTRY_K8S_LEASE_NAME" ("sentry-kubernetes") parse::object_name;
    /// the Lease's namespace
    lease_namespace: Option<String> = "SENTRY_K8S_LEASE_NAMESPACE" ("") parse::namespace, shown("`POD_NAMESPACE`, else the service account's, else the kubeconfig context's, else `default`");
    /// how long a leader's Lease holds without renewal before another replica may take it
    lease_duration: Duration = "SENTRY_K8S_LEASE_DURATION" ("15s") parse::duration;
    /// how long a leader keeps trying to renew before it stops reporting (shorter than the duration)
    renew_deadline: Duration = "SENTRY_K8S_RENEW_DEADLINE" ("10s") parse::duration;
    /// how often the Lease is renewed, tried, and the checkpoint written
    retry_period: Duration = "SENTRY_K8S_RETRY_PERIOD" ("2s") parse::duration;
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
    /// the leader-election identity (from the downward API), else the host name with a random suffix
    pod_name: Option<String> = "POD_NAME" ("") parse::text, platform;
    /// the Lease's namespace when `SENTRY_K8S_LEASE_NAMESPACE` is unset (from the downward API)
    pod_namespace: Option<String> = "POD_NAMESPACE" ("") parse::namespace, platform;
    /// a tracing filter for the agent's own logs; overrides `SENTRY_K8S_LOG_LEVEL`
    rust_log: Option<String> = "RUST_LOG" ("") parse::text, platform;
    /// proxy for `https` DSNs, `http://[user:password@]host:port` (`https_proxy` too)
    https_proxy: Option<String> = "HTTPS_PROXY" ("") parse::proxy, platform, secret, lowercase_alias;
    /// proxy for `http` DSNs (`http_proxy` too)
    http_proxy: Option<String> = "HTTP_PROXY" ("") parse::proxy, platform, secret, lowercase_alias;
    /// proxy for both when the two above are unset (`all_proxy` too)
    all_proxy: Option<String> = "ALL_PROXY" ("") parse::proxy, platform, secret, lowercase_alias;
    /// hosts, `.domains`, IPs or CIDRs reached without the proxy, comma-separated; `*` for all (`no_proxy` too)
    no_proxy: Option<String> = "NO_PROXY" ("") parse::text, platform, lowercase_alias;
    /// the GCP metadata server (`host[:port]`) the GKE integration asks
    gce_metadata_host: String = "GCE_METADATA_HOST" ("metadata.google.internal") parse::host, platform;
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
        let given = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let (vars, notices) = Vars::resolve(given, SETTINGS);
        let config = Self::from_table(&vars)?;
        config.check()?;
        Ok((config, notices))
    }

    /// The rules that span variables.
    fn check(&self) -> Result<(), ConfigError> {
        let show = |d: Duration| format!("{d:?}");
        if self.retry_period.is_zero() {
            return Err(ConfigError::new(
                "SENTRY_K8S_RETRY_PERIOD",
                &show(self.retry_period),
                "must be more than zero",
            ));
        }
        if self.renew_deadline <= self.retry_period {
            return Err(ConfigError::new(
                "SENTRY_K8S_RENEW_DEADLINE",
                &show(self.renew_deadline),
                format!(
                    "must be longer than SENTRY_K8S_RETRY_PERIOD ({:?})",
                    self.retry_period
                ),
            ));
        }
        if self.lease_duration <= self.renew_deadline {
            return Err(ConfigError::new(
                "SENTRY_K8S_LEASE_DURATION",
                &show(self.lease_duration),
                format!(
                    "must be longer than SENTRY_K8S_RENEW_DEADLINE ({:?}): a leader must stop before another can start",
                    self.renew_deadline
                ),
            ));
        }
        Ok(())
    }

    /// Whether events are printed instead of sent.
    pub fn is_dry_run(&self) -> bool {
        self.dry_run || self.dsn.is_none()
    }

    /// The kubeconfig files for out-of-cluster use, and which variable named them (for
    /// error messages): `SENTRY_K8S_KUBECONFIG_PATH`, else the `KUBECONFIG` list, else
    /// `~/.kube/config`.
    pub fn kubeconfig(&self) -> (Vec<PathBuf>, &'static str) {
        let home = self.home.as_deref();
        match (&self.kubeconfig_path, &self.kubeconfig_list) {
            (Some(path), _) => (vec![expand_home(path, home)], "SENTRY_K8S_KUBECONFIG_PATH"),
            (None, Some(list)) => (
                list.split(':')
                    .filter(|p| !p.is_empty())
                    .map(|p| expand_home(p, home))
                    .collect(),
                "KUBECONFIG",
            ),
            (None, None) => (
                home.map(|h| PathBuf::from(h).join(".kube").join("config"))
                    .into_iter()
                    .collect(),
                "SENTRY_K8S_KUBECONFIG_PATH",
            ),
        }
    }

    /// The `agent_hostname` tag: `HOSTNAME`, else the system's host name.
    pub fn hostname(&self) -> String {
        self.hostname_var
            .clone()
            .or_else(|| {
                hostname::get()
                    .ok()
                    .map(|h| h.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "unknown".into())
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
        assert_eq!(
            c.kubeconfig().0,
            vec![PathBuf::from("/home/op/.kube/config")]
        );
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
        assert_eq!(c.hostname(), "agent-0");
        assert!(c.watch_pods, "the Go agent always watches pods");
        assert_eq!(
            c.container_logs, 0,
            "logs leave the cluster only when asked"
        );
        assert!(c.scrub_patterns.is_empty() && !c.integration_gke);
        assert_eq!(c.gce_metadata_host, "metadata.google.internal");
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
        assert_eq!(c.kubeconfig().0, vec![PathBuf::from("/tmp/kc")]);
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
        assert_eq!(
            c.kubeconfig(),
            (vec![PathBuf::from("/a"), PathBuf::from("/b")], "KUBECONFIG")
        );
        let c = load(&[
            ("KUBECONFIG", "/a"),
            ("SENTRY_K8S_KUBECONFIG_PATH", "~/kc"),
            ("HOME", "/h"),
        ])
        .unwrap();
        assert_eq!(c.kubeconfig().0, vec![PathBuf::from("/h/kc")]);
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
            ("SENTRY_K8S_SHUTDOWN_TIMEOUT", "99999999999999999999h"),
            ("SENTRY_K8S_QUEUE_SIZE", "0"),
            ("SENTRY_K8S_QUEUE_TIMEOUT", "5 minutes"),
            ("SENTRY_K8S_SEND_CONCURRENCY", "-1"),
            ("SENTRY_K8S_EVENT_TTL", "1d"),
            ("SENTRY_K8S_DEDUP_CAPACITY", "lots"),
            ("SENTRY_K8S_WATCH_PODS", "sometimes"),
            ("SENTRY_K8S_CONTAINER_LOGS", "all"),
            ("SENTRY_K8S_CONTAINER_LOGS", "5000"),
            ("SENTRY_K8S_SCRUB_PATTERNS", "[a-"),
            ("SENTRY_K8S_INTEGRATION_GKE_ENABLED", "gke"),
            ("GCE_METADATA_HOST", "http://169.254.169.254/"),
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
        for dsn in [
            "https://secretkey@sentry.example.com",
            "secretkey",
            "https://secretkey:other@",
        ] {
            let e = err(&[("SENTRY_DSN", dsn)]);
            assert!(!e.to_string().contains("secretkey"), "{e}");
        }
    }

    #[test]
    fn fatal_and_panic_map_to_error_and_disabled_to_off() {
        let level = |v| load(&[("SENTRY_K8S_LOG_LEVEL", v)]).unwrap().log_level;
        assert_eq!(level("fatal"), LogLevel::Error);
        assert_eq!(level("PANIC"), LogLevel::Error);
        assert_eq!(level("disabled"), LogLevel::Off);
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
    fn lease_timings_must_let_a_leader_stop_before_another_starts() {
        let c = load(&[]).unwrap();
        assert_eq!(
            (c.lease_duration, c.renew_deadline, c.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert_eq!(c.leader_election, Switch::Auto);
        assert_eq!(
            err(&[("SENTRY_K8S_LEASE_DURATION", "10s")]).variable,
            "SENTRY_K8S_LEASE_DURATION"
        );
        assert_eq!(
            err(&[("SENTRY_K8S_RETRY_PERIOD", "10s")]).variable,
            "SENTRY_K8S_RENEW_DEADLINE"
        );
        assert_eq!(
            err(&[("SENTRY_K8S_LEASE_NAME", "Not_A_Name")]).variable,
            "SENTRY_K8S_LEASE_NAME"
        );
        assert_eq!(
            load(&[("SENTRY_K8S_LEADER_ELECTION", "true")])
                .unwrap()
                .leader_election,
            Switch::On
        );
    }

    #[test]
    fn blank_means_the_default_unless_blank_means_something() {
        let c = load(&[
            ("SENTRY_K8S_QUEUE_SIZE", " "),
            ("SENTRY_K8S_SHUTDOWN_TIMEOUT", ""),
            ("SENTRY_K8S_HTTP_ADDR", ""),
        ])
        .unwrap();
        assert_eq!(c.queue_size.get(), 1000);
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
        assert_eq!(c.http_addr, None, "an empty address disables the server");
    }

    #[test]
    fn an_empty_filter_variable_means_the_defaults() {
        // As in the Go agent, and as a chart leaves it when the value is unset.
        let defaults = load(&[]).unwrap();
        for blank in ["", "  "] {
            let c = load(&[
                ("SENTRY_K8S_FILTER_OUT_EVENT_REASONS", blank),
                ("SENTRY_K8S_FILTER_OUT_EVENT_SOURCES", blank),
            ])
            .unwrap();
            assert_eq!(
                c.filter_out_reasons, defaults.filter_out_reasons,
                "{blank:?}"
            );
            assert!(c.filter_out_reasons.contains(&"dockerstart".to_string()));
            assert_eq!(c.filter_out_sources, defaults.filter_out_sources);
        }
    }
}
