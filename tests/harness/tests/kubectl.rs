//! kubectl against the fake apiserver: discovery, create, get, patch and delete of events
//! and pods. Skipped (with the reason printed) when kubectl is not on PATH.

use std::process::Command;

use harness::FakeApiServer;

fn kubectl_available() -> bool {
    match Command::new("kubectl")
        .arg("version")
        .arg("--client")
        .output()
    {
        Ok(out) if out.status.success() => true,
        _ => {
            eprintln!("SKIPPED: kubectl is not on PATH (CI installs Debian's kubernetes-client)");
            false
        }
    }
}

struct Kubectl {
    dir: harness::tempdir::TempDir,
}

impl Kubectl {
    fn new(server: &FakeApiServer) -> Self {
        let dir = harness::tempdir::tempdir().unwrap();
        server.write_kubeconfig(&dir.path().join("config")).unwrap();
        Self { dir }
    }

    /// Runs kubectl; returns stdout, panicking with stderr on failure.
    fn run(&self, args: &[&str], stdin: Option<&str>) -> String {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.dir.path().join("config"))
            .env("KUBECACHEDIR", self.dir.path().join("cache"))
            .env("HOME", self.dir.path())
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.unwrap_or("").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

const EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata:
  name: web-1.17a8c3b2d4e5f6a7
  namespace: default
involvedObject: {apiVersion: v1, kind: Pod, name: web-1, namespace: default}
reason: BackOff
message: Back-off restarting failed container app in pod web-1_default
type: Warning
count: 1
source: {component: kubelet, host: node-1}
"#;

// kubectl is a blocking process; a multi-threaded runtime keeps the server answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_creates_gets_patches_and_deletes_events_and_pods() {
    if !kubectl_available() {
        return;
    }
    let server = FakeApiServer::start().await.unwrap();
    let k = Kubectl::new(&server);
    let out = tokio::task::spawn_blocking(move || {
        vec![
            k.run(&["--validate=false", "create", "-f", "-"], Some(EVENT)),
            k.run(
                &["get", "events", "-o", "jsonpath={.items[*].reason}"],
                None,
            ),
            k.run(
                &[
                    "patch",
                    "event",
                    "web-1.17a8c3b2d4e5f6a7",
                    "--type",
                    "merge",
                    "-p",
                    r#"{"count":2}"#,
                ],
                None,
            ),
            k.run(
                &[
                    "get",
                    "event",
                    "web-1.17a8c3b2d4e5f6a7",
                    "-o",
                    "jsonpath={.count}",
                ],
                None,
            ),
            k.run(
                &[
                    "get",
                    "events.v1.events.k8s.io",
                    "-o",
                    "jsonpath={.items[*].note}",
                ],
                None,
            ),
            k.run(&["delete", "event", "web-1.17a8c3b2d4e5f6a7"], None),
            k.run(
                &["run", "nginx", "--image=nginx:1.27", "--restart=Never"],
                None,
            ),
            k.run(&["get", "pods", "-o", "name"], None),
            k.run(&["delete", "pod", "nginx"], None),
            k.run(&["get", "pods", "-o", "name"], None),
        ]
    })
    .await
    .unwrap();
    assert!(out[0].contains("created"), "{}", out[0]);
    assert_eq!(out[1], "BackOff");
    assert!(out[2].contains("patched"), "{}", out[2]);
    assert_eq!(out[3], "2");
    assert_eq!(
        out[4],
        "Back-off restarting failed container app in pod web-1_default"
    );
    assert!(out[5].contains("deleted"), "{}", out[5]);
    assert_eq!(out[7].trim(), "pod/nginx");
    assert_eq!(out[9].trim(), "");
    assert!(
        server
            .get("v1", "Event", "default", "web-1.17a8c3b2d4e5f6a7")
            .is_none()
    );
}
