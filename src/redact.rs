//! Keeping secrets out of log lines: DSN keys are masked wherever a DSN is shown.

/// `https://KEY[:SECRET]@host/1` becomes `https://***@host/1`; anything without credentials
/// is returned unchanged.
pub fn redact_dsn(dsn: &str) -> String {
    match dsn.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => dsn.to_string(),
        },
        None => match dsn.rsplit_once('@') {
            Some((_, host)) => format!("***@{host}"),
            None => dsn.to_string(),
        },
    }
}

/// Any `scheme://user:password@host` in free text (an error message quoting a URL) with the
/// credentials masked.
pub fn redact_credentials(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || c == '/' || c == '"' || c == '\'')
            .unwrap_or(tail.len());
        match tail[..end].rfind('@') {
            Some(userinfo) => {
                out.push_str("***");
                rest = &tail[userinfo..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// A parsed DSN for display: scheme, host, port and project, never the keys.
pub fn describe_dsn(dsn: &sentry::types::Dsn) -> String {
    let port = dsn.port();
    let default_port = match dsn.scheme() {
        sentry::types::Scheme::Https => 443,
        sentry::types::Scheme::Http => 80,
    };
    let host = if port == default_port {
        dsn.host().to_string()
    } else {
        format!("{}:{port}", dsn.host())
    };
    format!("{}://***@{host}/{}", dsn.scheme(), dsn.project_id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_public_and_secret_keys() {
        assert_eq!(
            redact_dsn("https://abc:def@o1.ingest.sentry.io/5"),
            "https://***@o1.ingest.sentry.io/5"
        );
        assert_eq!(redact_dsn("abc@host"), "***@host");
        assert_eq!(redact_dsn("no credentials"), "no credentials");
        assert_eq!(
            redact_credentials("proxy http://agent:pw@10.0.0.1:3128/ and https://k@o1.io/5, x://y"),
            "proxy http://***@10.0.0.1:3128/ and https://***@o1.io/5, x://y"
        );
        let dsn: sentry::types::Dsn = "http://abc@127.0.0.1:9000/42".parse().unwrap();
        assert_eq!(describe_dsn(&dsn), "http://***@127.0.0.1:9000/42");
    }
}
