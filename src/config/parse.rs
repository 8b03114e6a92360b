//! The value grammar of the variables: one parser per shape, each returning the value or
//! why it is not one. [`Setting`](super::setting::Setting) wraps the reason with the variable's name
//! and value.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use regex::Regex;
use sentry::types::Dsn;

use super::types::{ClusterConfigType, LogFormat, LogLevel, Namespaces, Switch};

/// What a parser returns: the value, or why the text is not one.
pub type Parsed<T> = Result<T, String>;

/// The longest duration any setting takes: beyond it, timers overflow.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Booleans as the reference agent reads them, plus the usual negatives.
pub fn boolean(value: &str) -> Parsed<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err("expected a boolean: 1/true/yes/on or 0/false/no/off (or empty)".into()),
    }
}

/// `auto`, or a boolean.
pub fn switch(value: &str) -> Parsed<Switch> {
    if value.trim().eq_ignore_ascii_case("auto") {
        return Ok(Switch::Auto);
    }
    boolean(value)
        .map(|on| if on { Switch::On } else { Switch::Off })
        .map_err(|_| "expected auto, or a boolean: 1/true/yes/on or 0/false/no/off".into())
}

/// A DNS-1123 subdomain: what Kubernetes accepts as most object names.
pub fn object_name(value: &str) -> Parsed<String> {
    let name = value.trim();
    let valid = !name.is_empty() && name.len() <= 253 && name.split('.').all(is_namespace_name);
    if valid {
        Ok(name.to_string())
    } else {
        Err("not a valid object name (lowercase letters, digits, '-' and '.')".into())
    }
}

/// A namespace name; blank is none.
pub fn namespace(value: &str) -> Parsed<Option<String>> {
    let Some(name) = text(value)? else {
        return Ok(None);
    };
    if is_namespace_name(&name) {
        Ok(Some(name))
    } else {
        Err("not a valid namespace name (lowercase letters, digits and '-', at most 63)".into())
    }
}

/// `90`, `90s`, `500ms`, `5m`, `1h`: at most a year.
pub fn duration(value: &str) -> Parsed<Duration> {
    let v = value.trim();
    let (number, unit) = match v.find(|c: char| !c.is_ascii_digit() && c != '.') {
        Some(i) => (&v[..i], &v[i..]),
        None => (v, "s"),
    };
    let n: f64 = number
        .parse()
        .map_err(|_| "expected a duration such as 30s, 500ms, 5m or 1h".to_string())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err("unknown unit; use ms, s, m or h".into()),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err("must be a non-negative duration".into());
    }
    if secs > MAX_DURATION.as_secs_f64() {
        return Err("must be at most 8760h (a year)".into());
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A duration longer than zero.
pub fn positive_duration(value: &str) -> Parsed<Duration> {
    match duration(value)? {
        d if d.is_zero() => Err("must be longer than 0".into()),
        d => Ok(d),
    }
}

/// A size in bytes: `1048576`, `512Ki`, `64Mi`, `1Gi` (`KiB`/`MiB`/`GiB` too).
pub fn bytes(value: &str) -> Parsed<usize> {
    let v = value.trim();
    let digits = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let number: usize = v[..digits]
        .parse()
        .map_err(|_| "expected a size such as 16Mi, 512Ki or 1048576".to_string())?;
    let unit = match v[digits..].trim().trim_end_matches('B') {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        _ => return Err("unknown unit; use Ki, Mi or Gi (or none for bytes)".into()),
    };
    number
        .checked_mul(unit)
        .ok_or_else(|| "too large".to_string())
}

/// A Sentry environment: what Sentry accepts (at most 64 characters; no newline, tab or
/// `/`; not `None`); blank is none.
pub fn environment(value: &str) -> Parsed<Option<String>> {
    let Some(value) = text(value)? else {
        return Ok(None);
    };
    if value.chars().count() > 64 || value.contains(['\n', '\r', '\t', '/']) || value == "None" {
        return Err(
            "Sentry refuses this environment: at most 64 characters, no newline, tab or '/', not \"None\""
                .into(),
        );
    }
    Ok(Some(value))
}

/// A Sentry release: what Sentry accepts (at most 200 characters; no newline, tab, `/` or
/// `\\`; not `.`, `..` or blank); blank is none.
pub fn release(value: &str) -> Parsed<Option<String>> {
    let Some(value) = text(value)? else {
        return Ok(None);
    };
    if value.chars().count() > 200
        || value.contains(['\n', '\r', '\t', '/', '\\'])
        || value == "."
        || value == ".."
    {
        return Err(
            "Sentry refuses this release: at most 200 characters, no newline, tab, '/' or '\\', not '.' or '..'"
                .into(),
        );
    }
    Ok(Some(value))
}

/// A proxy URL (`http://[user:password@]host:port`, or `host:port`); blank is none.
pub fn proxy(value: &str) -> Parsed<Option<String>> {
    let Some(value) = text(value)? else {
        return Ok(None);
    };
    let with_scheme = if value.contains("://") {
        value.clone()
    } else {
        format!("http://{value}")
    };
    let uri: hyper::Uri = with_scheme
        .parse()
        .map_err(|_| "expected a proxy URL such as http://proxy.example.com:3128".to_string())?;
    match uri.scheme_str() {
        Some("http") if uri.host().is_some() => Ok(Some(with_scheme)),
        Some("http") => Err("the proxy URL names no host".into()),
        _ => {
            Err("only http:// proxies are supported (HTTPS goes through them with CONNECT)".into())
        }
    }
}

/// A whole number, 0 allowed.
pub fn count(value: &str) -> Parsed<usize> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected a whole number >= 0".into())
}

/// A whole number, at least 1.
pub fn positive(value: &str) -> Parsed<NonZeroUsize> {
    value
        .trim()
        .parse()
        .map_err(|_| "expected a whole number >= 1".into())
}

/// Free text; blank is none.
pub fn text(value: &str) -> Parsed<Option<String>> {
    let value = value.trim();
    Ok((!value.is_empty()).then(|| value.to_string()))
}

/// A path (`~/` is kept as written; the caller expands it).
pub fn path(value: &str) -> Parsed<PathBuf> {
    Ok(PathBuf::from(value.trim()))
}

/// A Sentry DSN; blank is none. The reason never repeats the key.
pub fn dsn(value: &str) -> Parsed<Option<Dsn>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    Dsn::from_str(value)
        .map(Some)
        .map_err(|e| format!("not a valid DSN: {e}"))
}

/// `host:port`; blank disables.
pub fn listen_address(value: &str) -> Parsed<Option<SocketAddr>> {
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    value
        .parse()
        .map(Some)
        .map_err(|_| "expected host:port, e.g. 0.0.0.0:8080 (empty disables)".into())
}

/// A comma-separated list, trimmed and lowercased (matching is case-insensitive).
pub fn lowercase_list(value: &str) -> Parsed<Vec<String>> {
    Ok(value
        .split(',')
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect())
}

/// Regular expressions, one per line (a comma may be part of a pattern); blank lines are
/// skipped. Each is compiled now, so a bad one stops the agent at start.
pub fn regex_list(value: &str) -> Parsed<Vec<Regex>> {
    value
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(|pattern| {
            regex::RegexBuilder::new(pattern)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| {
                    let first = e.to_string();
                    let first = first.lines().last().unwrap_or("").trim().to_string();
                    format!("{pattern:?} is not a valid regular expression: {first}")
                })
        })
        .collect()
}

/// The most log lines a report may carry.
pub const MAX_LOG_LINES: usize = 1000;

/// A number of log lines: 0 (off) to [`MAX_LOG_LINES`].
pub fn log_lines(value: &str) -> Parsed<usize> {
    let lines = count(value)?;
    if lines > MAX_LOG_LINES {
        return Err(format!("at most {MAX_LOG_LINES} lines (0 turns it off)"));
    }
    Ok(lines)
}

/// `host` or `host:port`, no scheme or path.
pub fn host(value: &str) -> Parsed<String> {
    let host = value.trim();
    let valid = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
    if valid {
        Ok(host.to_string())
    } else {
        Err(
            "expected a host or host:port, e.g. metadata.google.internal or 169.254.169.254:80"
                .into(),
        )
    }
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

/// `a,b,a` watches `a` and `b`; `__all__` anywhere is one cluster-wide watch.
pub fn namespaces(value: &str) -> Parsed<Namespaces> {
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
            return Err(format!(
                "{ns:?} is not a valid namespace name (lowercase letters, digits and '-', at most 63)"
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

/// One of a closed set of names, case-insensitive.
fn one_of<T: Copy>(value: &str, names: &[(&str, T)], expected: &str) -> Parsed<T> {
    let wanted = value.trim().to_ascii_lowercase();
    names
        .iter()
        .find(|(name, _)| *name == wanted)
        .map(|(_, v)| *v)
        .ok_or_else(|| expected.to_string())
}

pub fn cluster_config_type(value: &str) -> Parsed<ClusterConfigType> {
    one_of(
        value,
        &[
            ("auto", ClusterConfigType::Auto),
            ("in-cluster", ClusterConfigType::InCluster),
            ("out-cluster", ClusterConfigType::OutCluster),
        ],
        "expected auto, in-cluster or out-cluster",
    )
}

/// zerolog's level names (the Go agent's), `fatal`/`panic` as error.
pub fn log_level(value: &str) -> Parsed<LogLevel> {
    one_of(
        value,
        &[
            ("info", LogLevel::Info),
            ("trace", LogLevel::Trace),
            ("debug", LogLevel::Debug),
            ("warn", LogLevel::Warn),
            ("warning", LogLevel::Warn),
            ("error", LogLevel::Error),
            ("fatal", LogLevel::Error),
            ("panic", LogLevel::Error),
            ("disabled", LogLevel::Off),
            ("off", LogLevel::Off),
            ("none", LogLevel::Off),
        ],
        "expected one of trace, debug, info, warn, error, fatal, panic, disabled",
    )
}

pub fn log_format(value: &str) -> Parsed<LogFormat> {
    one_of(
        value,
        &[
            ("text", LogFormat::Text),
            ("console", LogFormat::Text),
            ("json", LogFormat::Json),
        ],
        "expected text or json",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_units_and_refuse_what_timers_cannot_hold() {
        assert_eq!(duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(duration("90").unwrap(), Duration::from_secs(90));
        assert_eq!(duration("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(duration("8760h").unwrap(), MAX_DURATION);
        for bad in [
            "8761h",
            "99999999999999999999999h",
            "1e400",
            "-1s",
            "soon",
            "1d",
        ] {
            assert!(duration(bad).is_err(), "{bad}");
        }
        assert_eq!(duration("0s").unwrap(), Duration::ZERO);
        assert!(positive_duration("0s").is_err());
        assert_eq!(positive_duration("2s").unwrap(), Duration::from_secs(2));
    }

    #[test]
    fn patterns_are_one_per_line_and_compiled_at_start() {
        let patterns = regex_list("\\d{3},\\d{2}\n\n  (?i)secret  \n").unwrap();
        let shown: Vec<&str> = patterns.iter().map(Regex::as_str).collect();
        assert_eq!(shown, [r"\d{3},\d{2}", "(?i)secret"]);
        let error = regex_list("ok\n(unclosed").unwrap_err();
        assert!(
            error.starts_with("\"(unclosed\" is not a valid regular expression"),
            "{error}"
        );
        assert!(!error.contains('\n'), "one line: {error}");
        assert!(regex_list("").unwrap().is_empty());
    }

    #[test]
    fn hosts_and_log_lines_are_bounded() {
        assert_eq!(host(" 169.254.169.254:80 ").unwrap(), "169.254.169.254:80");
        assert!(host("http://metadata").is_err());
        assert_eq!(log_lines("50").unwrap(), 50);
        assert!(log_lines("1001").is_err());
    }

    #[test]
    fn namespaces_are_validated_and_deduplicated() {
        assert_eq!(
            namespaces("prod, staging,prod,,").unwrap(),
            Namespaces::List(vec!["prod".into(), "staging".into()])
        );
        assert_eq!(namespaces("prod,__all__").unwrap(), Namespaces::All);
        assert!(
            namespaces("prod,Bad_NS")
                .unwrap_err()
                .contains("\"Bad_NS\"")
        );
        assert_eq!(
            namespaces(" ").unwrap(),
            Namespaces::List(vec!["default".into()])
        );
    }
}
