//! Configuration: every environment variable the agent reads, parsed and validated once.
//!
//! [`settings`] declares each variable once; [`parse`] holds the value grammar; [`docs`]
//! renders `--help` and the README's table from the declarations. The names, defaults and
//! meanings of getsentry/sentry-kubernetes are kept, so swapping the image keeps working.
//! The spellings that lose their underscores when the names are pasted through Markdown
//! (`SENTRYK8SWATCH_NAMESPACES`, `SENTRYK8SCLUSTERCONFIGTYPE`) are accepted as aliases; the
//! canonical name wins when both are set.

pub mod docs;
pub mod parse;
pub mod settings;

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::redact::redact_dsn;
pub use settings::{Config, GLOBAL_TAG_PREFIX, Origin, SETTINGS, Setting};

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

/// The variables as given, aliases resolved to their canonical names.
pub struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    /// Resolves aliases and notes what an operator should hear about.
    fn resolve(given: BTreeMap<String, String>) -> (Self, Notices) {
        let mut notices = Notices::new();
        let mut values = given.clone();
        let mut known: Vec<String> = Vec::new();
        for setting in SETTINGS {
            known.push(setting.name.to_string());
            for alias in setting.aliases() {
                known.push(alias.clone());
                let Some(value) = given.get(&alias) else {
                    continue;
                };
                if given.contains_key(setting.name) {
                    notices.push(format!(
                        "both {} and its alias {alias} are set; using {}",
                        setting.name, setting.name
                    ));
                } else {
                    notices.push(format!(
                        "{alias} is read as {}; prefer the canonical name",
                        setting.name
                    ));
                    values.insert(setting.name.to_string(), value.clone());
                }
            }
        }
        for name in given.keys() {
            let ours = name.starts_with("SENTRY_K8S_") || name.starts_with("SENTRYK8S");
            if ours && !name.starts_with(GLOBAL_TAG_PREFIX) && !known.contains(name) {
                notices.push(format!(
                    "{name} is not a variable this agent reads; ignored"
                ));
            }
        }
        (Self { values }, notices)
    }

    /// One variable, parsed; unset (or blank, unless blank means something) is the default.
    pub fn read<T>(
        &self,
        setting: &Setting,
        parse: fn(&str) -> parse::Parsed<T>,
    ) -> Result<T, ConfigError> {
        let given = self.values.get(setting.name);
        let text = match given {
            Some(value) if setting.blank_is_value || !value.trim().is_empty() => value.as_str(),
            _ => setting.default,
        };
        parse(text).map_err(|reason| {
            let shown = if setting.secret {
                redact_secret(text)
            } else {
                text.to_string()
            };
            ConfigError::new(setting.name, &shown, reason)
        })
    }

    /// `SENTRY_K8S_GLOBAL_TAG_<key>=<value>`, keys checked.
    fn global_tags(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut tags = BTreeMap::new();
        for (name, value) in &self.values {
            let Some(key) = name.strip_prefix(GLOBAL_TAG_PREFIX) else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
            {
                return Err(ConfigError::new(
                    name,
                    "",
                    "a tag key may only contain letters, digits, '_', '.', ':' and '-'",
                ));
            }
            tags.insert(key.to_string(), value.clone());
        }
        Ok(tags)
    }
}

/// A secret as an error may show it: a DSN without its key, anything else not at all.
fn redact_secret(value: &str) -> String {
    if value.contains('@') {
        redact_dsn(value)
    } else if value.contains("://") {
        value.to_string()
    } else {
        "***".to_string()
    }
}

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
        let (vars, notices) = Vars::resolve(given);
        Self::from_table(&vars).map(|config| (config, notices))
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
    use std::time::Duration;

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
}
