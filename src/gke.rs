//! The GKE integration (`SENTRY_K8S_INTEGRATION_GKE_ENABLED`), as in the Go agent: the
//! cluster's name and location and the project, read once at start from the GCP metadata
//! server (`GCE_METADATA_HOST`), become tags on every event and a `gke` context with links
//! to the cluster and to the pod's logs in the Google Cloud console.
//!
//! The metadata server answers only requests with `Metadata-Flavor: Google`. It is asked a
//! few times; if it never answers, the agent runs without these tags (the caller logs
//! and counts it) rather than not at all.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

/// Attempts per document before giving up.
const ATTEMPTS: u32 = 3;
/// One request's deadline.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// The wait before the second attempt; doubled before each later one.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The most of a metadata document read (the instance attributes hold `kube-env`).
const MAX_DOCUMENT_BYTES: usize = 1 << 20;

const INSTANCE_ATTRIBUTES: &str = "/computeMetadata/v1/instance/attributes/?recursive=true";
const PROJECT: &str = "/computeMetadata/v1/project/?recursive=true";

/// Why the cluster could not be identified.
#[derive(Debug, thiserror::Error)]
pub enum GkeError {
    #[error("the metadata server at {host} did not answer {path}: {detail}")]
    Unreachable {
        host: String,
        path: &'static str,
        detail: String,
    },
    #[error("the metadata server at {host} answered {path} with HTTP {status}")]
    Status {
        host: String,
        path: &'static str,
        status: u16,
    },
    #[error("the metadata server at {host} answered {path} with something that is not JSON")]
    NotJson { host: String, path: &'static str },
    #[error(
        "the metadata server at {host} names no GKE cluster (no cluster-name or cluster-location attribute)"
    )]
    NotGke { host: String },
}

/// The cluster, as the metadata server names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Gke {
    pub cluster_name: String,
    pub cluster_location: String,
    pub project_id: String,
}

/// The first of `keys` that `doc` has as a non-empty string (both spellings are in use).
fn field(doc: &Value, keys: &[&str]) -> String {
    keys.iter()
        .find_map(|k| {
            doc.get(*k)
                .and_then(Value::as_str)
                .filter(|v| !v.is_empty())
        })
        .unwrap_or("")
        .to_string()
}

impl Gke {
    /// Reads the instance attributes and the project from the metadata server at `host`.
    pub async fn discover(host: &str) -> Result<Self, GkeError> {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let instance = fetch(&client, host, INSTANCE_ATTRIBUTES).await?;
        let project = fetch(&client, host, PROJECT).await?;
        let gke = Self::from_documents(&instance, &project);
        if gke.cluster_name.is_empty() || gke.cluster_location.is_empty() {
            return Err(GkeError::NotGke { host: host.into() });
        }
        Ok(gke)
    }

    /// The cluster from the two metadata documents.
    pub fn from_documents(instance: &Value, project: &Value) -> Self {
        Self {
            cluster_name: field(instance, &["cluster-name", "clusterName"]),
            cluster_location: field(instance, &["cluster-location", "clusterLocation"]),
            project_id: field(project, &["projectId", "project-id"]),
        }
    }

    /// The tags every event gets.
    pub fn tags(&self) -> [(&'static str, &str); 3] {
        [
            ("gke_cluster_name", &self.cluster_name),
            ("gke_cluster_location", &self.cluster_location),
            ("gke_project_name", &self.project_id),
        ]
    }

    /// The cluster's page in the console.
    pub fn cluster_url(&self) -> Option<String> {
        (!self.project_id.is_empty()).then(|| {
            format!(
                "https://console.cloud.google.com/kubernetes/clusters/details/{}/{}/details?project={}",
                self.cluster_location, self.cluster_name, self.project_id
            )
        })
    }

    /// The pod's container logs of the last hour in the console's Logs Explorer.
    pub fn pod_logs_url(&self, namespace: &str, pod: &str) -> Option<String> {
        if self.project_id.is_empty() || namespace.is_empty() || pod.is_empty() {
            return None;
        }
        let clause = |key: &str, value: &str| format!("{key}%3D%22{value}%22%0A");
        Some(format!(
            "https://console.cloud.google.com/logs/query;query={}{}{}{}{}{};duration=PT1H?project={}",
            clause("resource.type", "k8s_container"),
            clause("resource.labels.project_id", &self.project_id),
            clause("resource.labels.location", &self.cluster_location),
            clause("resource.labels.cluster_name", &self.cluster_name),
            clause("resource.labels.namespace_name", namespace),
            clause("resource.labels.pod_name", pod),
            self.project_id
        ))
    }
}

type HttpClient = Client<hyper_util::client::legacy::connect::HttpConnector, Empty<Bytes>>;

/// One metadata document, asked up to [`ATTEMPTS`] times.
async fn fetch(client: &HttpClient, host: &str, path: &'static str) -> Result<Value, GkeError> {
    let mut backoff = FIRST_BACKOFF;
    let mut attempt = 1;
    loop {
        match fetch_once(client, host, path).await {
            Ok(doc) => return Ok(doc),
            // A server that answers, but not with JSON, will not change its mind.
            Err(e @ GkeError::NotJson { .. }) => return Err(e),
            Err(e) if attempt >= ATTEMPTS => return Err(e),
            Err(_) => {
                tokio::time::sleep(backoff).await;
                backoff *= 2;
                attempt += 1;
            }
        }
    }
}

async fn fetch_once(
    client: &HttpClient,
    host: &str,
    path: &'static str,
) -> Result<Value, GkeError> {
    let unreachable = |detail: String| GkeError::Unreachable {
        host: host.into(),
        path,
        detail,
    };
    let request = hyper::Request::get(format!("http://{host}{path}"))
        .header("metadata-flavor", "Google")
        .body(Empty::new())
        .map_err(|e| unreachable(e.to_string()))?;
    let response = tokio::time::timeout(REQUEST_TIMEOUT, client.request(request))
        .await
        .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?;
    let status = response.status().as_u16();
    if status != 200 {
        return Err(GkeError::Status {
            host: host.into(),
            path,
            status,
        });
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_DOCUMENT_BYTES);
    let bytes = tokio::time::timeout(REQUEST_TIMEOUT, body.collect())
        .await
        .map_err(|_| unreachable(format!("no answer within {REQUEST_TIMEOUT:?}")))?
        .map_err(|e| unreachable(e.to_string()))?
        .to_bytes();
    serde_json::from_slice(&bytes).map_err(|_| GkeError::NotJson {
        host: host.into(),
        path,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_both_spellings_and_builds_the_go_agents_links() {
        let gke = Gke::from_documents(
            &json!({"cluster-name": "prod-1", "cluster-location": "europe-west1", "kube-env": "…"}),
            &json!({"projectId": "shop-prod", "numericProjectId": 123}),
        );
        assert_eq!(
            gke,
            Gke {
                cluster_name: "prod-1".into(),
                cluster_location: "europe-west1".into(),
                project_id: "shop-prod".into(),
            }
        );
        let other = Gke::from_documents(
            &json!({"clusterName": "b", "clusterLocation": "us"}),
            &json!({"project-id": "p"}),
        );
        assert_eq!(
            (other.cluster_name.as_str(), other.project_id.as_str()),
            ("b", "p")
        );
        assert_eq!(
            gke.cluster_url().unwrap(),
            "https://console.cloud.google.com/kubernetes/clusters/details/europe-west1/prod-1/details?project=shop-prod"
        );
        assert_eq!(
            gke.pod_logs_url("shop", "web-1").unwrap(),
            "https://console.cloud.google.com/logs/query;query=resource.type%3D%22k8s_container%22%0Aresource.labels.project_id%3D%22shop-prod%22%0Aresource.labels.location%3D%22europe-west1%22%0Aresource.labels.cluster_name%3D%22prod-1%22%0Aresource.labels.namespace_name%3D%22shop%22%0Aresource.labels.pod_name%3D%22web-1%22%0A;duration=PT1H?project=shop-prod"
        );
        assert!(gke.pod_logs_url("", "web-1").is_none());
    }
}
