//! HTTP to one Sentry destination: its own connection pool, TLS with the system's CA
//! bundle (`SSL_CERT_FILE`/`SSL_CERT_DIR`), the proxy the environment names for it
//! (`HTTPS_PROXY` through `CONNECT`, `HTTP_PROXY` in absolute form, `NO_PROXY` bypassing
//! both, as curl and the Go agent read them), TCP keepalive, and one timeout for the whole
//! request — headers and body — so a stalled answer never holds a sender.

use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::Uri;
use hyper::header::HeaderValue;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::proxy::Tunnel;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::proxy::matcher::Matcher;
use hyper_util::rt::TokioExecutor;
use sentry::types::Dsn;

/// Our user agent, on every request to Sentry.
pub const USER_AGENT: &str = concat!("sentry-kubernetes/", env!("CARGO_PKG_VERSION"));

/// How long an idle pooled connection is kept.
const POOL_IDLE: Duration = Duration::from_secs(60);
/// TCP keepalive probes on every connection.
const KEEPALIVE: Duration = Duration::from_secs(30);

/// What the transports share: TLS roots, the proxy rules, the request timeout.
pub struct Transports {
    tls: rustls::ClientConfig,
    proxies: Matcher,
    timeout: Duration,
}

/// The proxy variables, as configuration read them.
#[derive(Clone, Debug, Default)]
pub struct ProxyVars {
    pub https: Option<String>,
    pub http: Option<String>,
    pub all: Option<String>,
    pub no: Option<String>,
}

impl Transports {
    /// Without a CA bundle, fails if `need_ca` (an https DSN); otherwise only plain HTTP works.
    pub fn new(need_ca: bool, proxies: &ProxyVars, timeout: Duration) -> std::io::Result<Self> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = match rustls_native_certs_roots() {
            Ok(roots) => roots,
            Err(e) if need_ca => return Err(e),
            Err(_) => rustls::RootCertStore::empty(),
        };
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let value = |v: &Option<String>| v.clone().unwrap_or_default();
        let proxies = Matcher::builder()
            .https(value(&proxies.https))
            .http(value(&proxies.http))
            .all(value(&proxies.all))
            .no(value(&proxies.no))
            .build();
        Ok(Self {
            tls,
            proxies,
            timeout,
        })
    }

    /// A transport for one DSN, with its own connection pool.
    pub fn for_dsn(&self, dsn: &Dsn) -> Transport {
        let url: Uri = dsn
            .envelope_api_url()
            .as_str()
            .parse()
            .expect("a DSN's envelope URL is a valid URI");
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_keepalive(Some(KEEPALIVE));
        http.set_nodelay(true);
        let https = || {
            hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(self.tls.clone())
                .https_or_http()
                .enable_http1()
        };
        let builder = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(POOL_IDLE);
            b
        };
        let intercept = self.proxies.intercept(&url);
        let (client, proxy_auth, via) = match intercept {
            None => (
                Clients::Direct(builder().build(https().wrap_connector(http))),
                None,
                None,
            ),
            Some(proxy) if url.scheme_str() == Some("https") => {
                let mut tunnel = Tunnel::new(proxy.uri().clone(), http);
                if let Some(auth) = proxy.basic_auth() {
                    tunnel = tunnel.with_auth(auth.clone());
                }
                (
                    Clients::Tunnel(builder().build(https().wrap_connector(tunnel))),
                    None,
                    Some(describe_proxy(proxy.uri())),
                )
            }
            Some(proxy) => {
                let forward = ForwardProxy {
                    proxy: proxy.uri().clone(),
                    http,
                };
                (
                    Clients::Forward(builder().build(forward)),
                    proxy.basic_auth().cloned(),
                    Some(describe_proxy(proxy.uri())),
                )
            }
        };
        let auth = dsn.to_auth(Some(USER_AGENT)).to_string();
        Transport {
            client,
            url,
            auth: HeaderValue::from_str(&auth).expect("a DSN's auth header is ASCII"),
            proxy_auth,
            timeout: self.timeout,
            via,
        }
    }
}

fn rustls_native_certs_roots() -> std::io::Result<rustls::RootCertStore> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        let why = found
            .errors
            .first()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "no CA certificates found".into());
        return Err(std::io::Error::new(std::io::ErrorKind::NotFound, why));
    }
    Ok(roots)
}

/// A proxy for logs: scheme, host and port, never credentials.
fn describe_proxy(uri: &Uri) -> String {
    format!(
        "{}://{}:{}",
        uri.scheme_str().unwrap_or("http"),
        uri.host().unwrap_or(""),
        uri.port_u16().unwrap_or(80)
    )
}

type Body = Full<Bytes>;

enum Clients {
    Direct(Client<HttpsConnector<HttpConnector>, Body>),
    Tunnel(Client<HttpsConnector<Tunnel<HttpConnector>>, Body>),
    Forward(Client<ForwardProxy, Body>),
}

/// Sentry's answer to one envelope.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<String>,
    pub rate_limits: Option<String>,
    /// The start of the body, for the log when Sentry refuses something.
    pub detail: String,
}

/// Posting envelopes to one DSN.
pub struct Transport {
    client: Clients,
    url: Uri,
    auth: HeaderValue,
    proxy_auth: Option<HeaderValue>,
    timeout: Duration,
    via: Option<String>,
}

impl Transport {
    /// The proxy this destination goes through, for logs.
    pub fn via(&self) -> Option<&str> {
        self.via.as_deref()
    }

    /// One POST of a gzipped envelope; `Err` is a network failure or the timeout.
    pub async fn post(&self, body: Bytes) -> Result<Reply, String> {
        let mut request = hyper::Request::post(self.url.clone())
            .header("content-type", "application/x-sentry-envelope")
            .header("content-encoding", "gzip")
            .header("x-sentry-auth", self.auth.clone())
            .header("user-agent", USER_AGENT);
        if let Some(auth) = &self.proxy_auth {
            request = request.header("proxy-authorization", auth.clone());
        }
        let request = request
            .body(Full::new(body))
            .expect("a valid DSN gives a valid request");
        let exchange = async {
            let response = match &self.client {
                Clients::Direct(c) => c.request(request).await,
                Clients::Tunnel(c) => c.request(request).await,
                Clients::Forward(c) => c.request(request).await,
            }
            .map_err(|e| describe_error(&e))?;
            let header = |name: &str| {
                response
                    .headers()
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let (status, retry_after, rate_limits) = (
                response.status().as_u16(),
                header("retry-after"),
                header("x-sentry-rate-limits"),
            );
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("reading the answer: {e}"))?
                .to_bytes();
            Ok(Reply {
                status,
                retry_after,
                rate_limits,
                detail: String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
            })
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(format!("no complete answer within {:?}", self.timeout)),
        }
    }
}

/// An error with its causes, for the log (hyper's own message is only the outermost).
fn describe_error(error: &(dyn StdError + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Plain HTTP through a forward proxy: every connection goes to the proxy, and requests are
/// written in absolute form (`POST http://sentry/api/1/envelope/`).
#[derive(Clone)]
struct ForwardProxy {
    proxy: Uri,
    http: HttpConnector,
}

impl tower_service::Service<Uri> for ForwardProxy {
    type Response = Proxied<<HttpConnector as tower_service::Service<Uri>>::Response>;
    type Error = <HttpConnector as tower_service::Service<Uri>>::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx)
    }

    fn call(&mut self, _destination: Uri) -> Self::Future {
        let connecting = self.http.call(self.proxy.clone());
        Box::pin(async move { connecting.await.map(Proxied) })
    }
}

/// A connection to a forward proxy: says so, so the client writes absolute-form requests.
struct Proxied<T>(T);

impl<T: Connection> Connection for Proxied<T> {
    fn connected(&self) -> Connected {
        self.0.connected().proxy(true)
    }
}

impl<T: Read + Unpin> Read for Proxied<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: Write + Unpin> Write for Proxied<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}
