//! The agent's own HTTP endpoints (`/healthz`, `/readyz`, `/metrics`) as a test or the
//! benchmark reads them: plain blocking HTTP/1.0, no client library.

use std::io::{Read, Write};
use std::time::Duration;

/// How long one request may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// A minimal HTTP/1.0 GET: the body, then the status code on the last line. A refused
/// connection answers `"\n"` (no status), so callers can poll until the agent listens.
pub fn http_get(address: &str, path: &str) -> String {
    let Ok(mut stream) = std::net::TcpStream::connect(address) else {
        return "\n".into();
    };
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let code = head.split_whitespace().nth(1).unwrap_or("");
    format!("{body}\n{code}")
}

/// Whether `path` answers 200.
pub fn is_ok(address: &str, path: &str) -> bool {
    http_get(address, path).ends_with("\n200")
}

/// One sample of a metric from `/metrics` (the first line starting with `series`).
pub fn metric(address: &str, series: &str) -> f64 {
    http_get(address, "/metrics")
        .lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0)
}
