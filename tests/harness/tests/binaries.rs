//! The `fake-apiserver` and `sentry-sink` binaries, run as an operator or script would.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams};

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts a binary and returns it with its first stdout line.
fn start(bin: &str, args: &[&str]) -> (Running, String, BufReader<std::process::ChildStdout>) {
    let mut child = Command::new(bin)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    (Running(child), first.trim().to_string(), stdout)
}

const SEED: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: shop}
---
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: Event
  metadata: {name: cart-1.a, namespace: shop}
  involvedObject: {kind: Pod, name: cart-1, namespace: shop}
  reason: BackOff
  message: Back-off restarting failed container
  type: Warning
- apiVersion: v1
  kind: Event
  metadata: {name: cart-1.b, namespace: shop}
  involvedObject: {kind: Pod, name: cart-1, namespace: shop}
  reason: Pulled
  message: Container image "cart:1.2" already present on machine
  type: Normal
"#;

#[tokio::test]
async fn fake_apiserver_binary_serves_tls_with_a_token_seeds_and_kubeconfig() {
    let dir = harness::tempdir::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let tls = dir.path().join("tls");
    let (_server, first, _) = start(
        env!("CARGO_BIN_EXE_fake-apiserver"),
        &[
            "--token",
            "t0ken",
            "--tls-dir",
            tls.to_str().unwrap(),
            "--seed",
            seed.to_str().unwrap(),
            "--kubeconfig-out",
            kubeconfig.to_str().unwrap(),
        ],
    );
    assert!(
        first.starts_with("listening on https://127.0.0.1:"),
        "{first}"
    );
    assert!(tls.join("ca.crt").exists());

    let config = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
    let config = kube::Config::from_custom_kubeconfig(config, &Default::default())
        .await
        .unwrap();
    let events: Api<Event> = Api::namespaced(kube::Client::try_from(config).unwrap(), "shop");
    let listed = events.list(&ListParams::default()).await.unwrap();
    let reasons: Vec<_> = listed
        .items
        .iter()
        .map(|e| e.reason.clone().unwrap())
        .collect();
    assert_eq!(reasons, ["BackOff", "Pulled"]);
}

#[test]
fn fake_apiserver_binary_rejects_bad_arguments_with_exit_code_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_fake-apiserver"))
        .arg("--listen")
        .arg("nonsense")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--listen \"nonsense\""));
}

#[test]
fn sentry_sink_binary_prints_its_address_and_dsns() {
    let (_sink, first, mut rest) = start(
        env!("CARGO_BIN_EXE_sentry-sink"),
        &["--project", "7:k7", "--project", "8:k8"],
    );
    assert!(
        first.starts_with("listening on http://127.0.0.1:"),
        "{first}"
    );
    let address = first.trim_start_matches("listening on http://");
    let mut line = String::new();
    rest.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), format!("dsn http://k7@{address}/7"));
}
