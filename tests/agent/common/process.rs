//! The agent as its own process: its output collected line by line, SIGTERM and SIGKILL.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

use super::{DEADLINE, eventually};

pub const BIN: &str = env!("CARGO_BIN_EXE_sentry-kubernetes");

/// A running agent process whose output is collected line by line.
pub struct Process {
    pub child: Child,
    pub stdout: Arc<Mutex<Vec<String>>>,
    pub stderr: Arc<Mutex<Vec<String>>>,
}

fn collect(stream: impl std::io::Read + Send + 'static) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    lines
}

impl Process {
    pub fn spawn(vars: &[(String, String)]) -> Self {
        let mut child = Command::new(BIN)
            .env_clear()
            .envs(vars.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = collect(child.stdout.take().unwrap());
        let stderr = collect(child.stderr.take().unwrap());
        Self {
            child,
            stdout,
            stderr,
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    pub fn stdout_lines(&self) -> Vec<String> {
        self.stdout.lock().unwrap().clone()
    }

    pub async fn wait_for_log(&self, what: &str, needle: &str) {
        let stderr = self.stderr.clone();
        eventually(what, || {
            stderr.lock().unwrap().iter().any(|l| l.contains(needle))
        })
        .await;
    }

    pub fn terminate(&self) {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub async fn wait(&mut self) -> ExitStatus {
        let child = &mut self.child;
        let status = super::poll(DEADLINE, || child.try_wait().unwrap()).await;
        status.unwrap_or_else(|| panic!("the agent did not exit: {}", self.stderr()))
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use harness::probe::{http_get, metric};

impl Process {
    /// The address of its probes and metrics, from its JSON log (`SENTRY_K8S_LOG_FORMAT=json`,
    /// `SENTRY_K8S_HTTP_ADDR=127.0.0.1:0`).
    pub async fn http_address(&self) -> String {
        self.wait_for_log("the probe address", "serving /healthz")
            .await;
        self.stderr
            .lock()
            .unwrap()
            .iter()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .find_map(|l| l["address"].as_str().map(str::to_string))
            .expect("the log line names the address")
    }

    /// SIGKILL: no flush, no release — a crash.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
