//! Test harness: a fake Kubernetes API server faithful to the parts event exporters depend
//! on, and a Sentry ingest sink. Both run in-process (`FakeApiServer::start`,
//! `SentrySink::start`) or as binaries (`fake-apiserver`, `sentry-sink`); the control APIs
//! are documented in `tests/harness/README.md`.
//!
//! - [`apiserver`]: list/watch semantics (paging, replay, 410 after compaction, bookmarks,
//!   streaming lists), writes with real status codes, metadata-only responses, discovery,
//!   bearer tokens, TLS, RBAC denials, and fault injection.
//! - [`sink`]: envelopes and store requests, content encodings, public-key checks, canned
//!   429/5xx answers (per item type, with stalled bodies) and delays, over HTTP or HTTPS.
//! - [`proxy`]: a recording HTTP proxy (CONNECT and absolute-form requests).
//! - [`metadata`]: a GCP metadata server, for the GKE integration.

pub mod apiserver;
pub mod fixtures;
pub mod metadata;
pub mod probe;
pub mod proxy;
pub mod scenarios;
pub mod serve;
pub mod sink;
pub mod tempdir;
pub mod tls;

pub use apiserver::faults::{DelayRule, DenyRule, FailRule, RequestRecord};
pub use apiserver::status::ApiError;
pub use apiserver::{ApiServerOptions, FakeApiServer, ObjectStore};
pub use proxy::RecordingProxy;
pub use sink::{RespondRule, SentrySink, SinkDelay};
