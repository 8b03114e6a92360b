//! `sentry-sink`: the harness Sentry ingest endpoint as a process.

use std::net::SocketAddr;
use std::process::ExitCode;

use harness::SentrySink;

const USAGE: &str = "usage: sentry-sink [--listen ADDR] [--project ID:KEY]...

  --listen ADDR       address to bind (default 127.0.0.1:0, a free port)
  --project ID:KEY    accept project ID with public key KEY (default 1:publickey)

Prints `listening on http://127.0.0.1:PORT`, then one `dsn ...` line per project.
Control API under /_sink/ (see tests/harness/README.md).";

#[tokio::main]
async fn main() -> ExitCode {
    let mut listen = SocketAddr::from(([127, 0, 0, 1], 0));
    let mut projects: Vec<(String, String)> = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next();
        let parsed: Result<(), String> = match (arg.as_str(), value) {
            ("--listen", Some(v)) => v
                .parse()
                .map(|a| listen = a)
                .map_err(|e| format!("--listen {v:?}: {e}")),
            ("--project", Some(v)) => match v.split_once(':') {
                Some((id, key)) if !id.is_empty() && !key.is_empty() => {
                    projects.push((id.into(), key.into()));
                    Ok(())
                }
                _ => Err(format!("--project {v:?}: expected ID:KEY")),
            },
            ("-h" | "--help", _) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            (other, _) => Err(format!("unknown argument or missing value: {other:?}")),
        };
        if let Err(e) = parsed {
            eprintln!("sentry-sink: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    }
    if projects.is_empty() {
        projects.push(("1".into(), "publickey".into()));
    }
    let refs: Vec<(&str, &str)> = projects
        .iter()
        .map(|(i, k)| (i.as_str(), k.as_str()))
        .collect();
    let sink = match SentrySink::start_on(listen, &refs).await {
        Ok(sink) => sink,
        Err(e) => {
            eprintln!("sentry-sink: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    println!("listening on {}", sink.url());
    for (id, _) in &projects {
        println!("dsn {}", sink.dsn_for(id).expect("configured project"));
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("can install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    ExitCode::SUCCESS
}
