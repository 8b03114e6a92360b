//! Reaching the cluster: in-cluster (service account token and CA), out-of-cluster
//! (a kubeconfig's current context), or `auto` (in-cluster when it can, else kubeconfig).

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::{ClusterConfigType, Config, ConfigError};
use crate::redact::redact_credentials;

/// How the agent is connected, for the start-up log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Connection {
    InCluster { server: String },
    Kubeconfig { server: String, paths: Vec<PathBuf> },
}

impl Connection {
    /// The API server's URL.
    pub fn server(&self) -> &str {
        match self {
            Connection::InCluster { server } | Connection::Kubeconfig { server, .. } => server,
        }
    }
}

/// Whether the service-account environment and files are present.
pub fn in_cluster_available(config: &Config) -> bool {
    config.service_host.is_some()
        && config.service_port.is_some()
        && config.service_account_dir.join("token").is_file()
}

/// A kube config from the service account: the token file (re-read by kube as it rotates),
/// the CA (also re-read), and the namespace file.
pub fn in_cluster_config(config: &Config) -> Result<kube::Config, ConfigError> {
    const VAR: &str = "SENTRY_K8S_CLUSTER_CONFIG_TYPE";
    let host = config.service_host.as_deref().ok_or_else(|| {
        ConfigError::new(
            VAR,
            "in-cluster",
            "KUBERNETES_SERVICE_HOST is not set (not running in a pod?)",
        )
    })?;
    let port = config.service_port.as_deref().ok_or_else(|| {
        ConfigError::new(
            VAR,
            "in-cluster",
            "KUBERNETES_SERVICE_PORT is not set (not running in a pod?)",
        )
    })?;
    let port: u16 = port
        .parse()
        .map_err(|_| ConfigError::new("KUBERNETES_SERVICE_PORT", port, "expected a port number"))?;
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let url = format!("https://{host}:{port}");
    let cluster_url = url.parse().map_err(|e| {
        ConfigError::new(
            "KUBERNETES_SERVICE_HOST",
            &host,
            format!("not a valid host: {e}"),
        )
    })?;
    let dir = &config.service_account_dir;
    let token_file = dir.join("token");
    if !token_file.is_file() {
        return Err(ConfigError::new(
            "SENTRY_K8S_SERVICE_ACCOUNT_DIR",
            &dir.display().to_string(),
            "no service account token here (is automountServiceAccountToken off?)",
        ));
    }
    let ca_file = dir.join("ca.crt");
    let ca = read_certificates(&ca_file).map_err(|reason| {
        ConfigError::new(
            "SENTRY_K8S_SERVICE_ACCOUNT_DIR",
            &dir.display().to_string(),
            reason,
        )
    })?;
    let mut config = kube::Config::new(cluster_url);
    config.default_namespace = std::fs::read_to_string(dir.join("namespace"))
        .map(|ns| ns.trim().to_string())
        .unwrap_or_else(|_| "default".into());
    config.root_cert = Some(ca);
    config.root_cert_file = Some(ca_file);
    config.auth_info.token_file = Some(token_file.to_string_lossy().into_owned());
    Ok(config)
}

fn read_certificates(path: &Path) -> Result<Vec<Vec<u8>>, String> {
    let pem = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let certs: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(&pem)
        .map(|c| c.map(|c| c.to_vec()))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} is not a PEM certificate bundle: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", path.display()));
    }
    Ok(certs)
}

/// Kubeconfig paths as an operator writes them (`KUBECONFIG` style).
fn search_path(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(":")
}

/// A kube config from the kubeconfig files (merged in order, like kubectl), current context.
pub async fn kubeconfig_config(
    paths: &[PathBuf],
    variable: &str,
) -> Result<kube::Config, ConfigError> {
    let shown = search_path(paths);
    let mut merged: Option<Kubeconfig> = None;
    for path in paths {
        if !path.is_file() && paths.len() > 1 {
            continue;
        }
        let file = Kubeconfig::read_from(path).map_err(|e| {
            ConfigError::new(
                variable,
                &shown,
                format!("cannot load kubeconfig {}: {e}", path.display()),
            )
        })?;
        merged = Some(match merged {
            None => file,
            Some(acc) => acc.merge(file).map_err(|e| {
                ConfigError::new(variable, &shown, format!("cannot merge kubeconfigs: {e}"))
            })?,
        });
    }
    let kubeconfig =
        merged.ok_or_else(|| ConfigError::new(variable, &shown, "no kubeconfig file found"))?;
    kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| {
            ConfigError::new(
                variable,
                &shown,
                format!(
                    "cannot use kubeconfig: {}",
                    redact_credentials(&e.to_string())
                ),
            )
        })
}

/// The kube config the configuration asks for.
pub async fn kube_config(config: &Config) -> Result<(kube::Config, Connection), ConfigError> {
    let use_in_cluster = match config.cluster_config {
        ClusterConfigType::InCluster => true,
        ClusterConfigType::OutCluster => false,
        ClusterConfigType::Auto => in_cluster_available(config),
    };
    if use_in_cluster {
        let kube_config = in_cluster_config(config)?;
        let server = kube_config.cluster_url.to_string();
        return Ok((kube_config, Connection::InCluster { server }));
    }
    let (kubeconfig, variable) = config.kubeconfig();
    if config.cluster_config == ClusterConfigType::Auto && !kubeconfig.iter().any(|p| p.is_file()) {
        return Err(ConfigError::new(
            "SENTRY_K8S_CLUSTER_CONFIG_TYPE",
            "auto",
            format!(
                "not in a cluster (no KUBERNETES_SERVICE_HOST or service account token) and no kubeconfig at {}",
                search_path(&kubeconfig)
            ),
        ));
    }
    let kube_config = kubeconfig_config(&kubeconfig, variable).await?;
    let server = kube_config.cluster_url.to_string();
    Ok((
        kube_config,
        Connection::Kubeconfig {
            server,
            paths: kubeconfig,
        },
    ))
}

/// A client for the configured cluster.
pub async fn connect(config: &Config) -> Result<(kube::Client, Connection), ConfigError> {
    let (kube_config, connection) = kube_config(config).await?;
    let client = kube::Client::try_from(kube_config).map_err(|e| {
        ConfigError::new(
            "SENTRY_K8S_CLUSTER_CONFIG_TYPE",
            &format!("{:?}", config.cluster_config),
            format!(
                "cannot build a client: {}",
                redact_credentials(&e.to_string())
            ),
        )
    })?;
    Ok((client, connection))
}
