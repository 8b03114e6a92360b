//! `fake-apiserver`: the harness apiserver as a process, for kubectl, the demo and e2e runs.

use std::path::PathBuf;
use std::process::ExitCode;

use harness::apiserver::control::parse_objects;
use harness::{ApiServerOptions, FakeApiServer};

const USAGE: &str =
    "usage: fake-apiserver [--listen ADDR] [--token TOKEN[=USER]]... [--tls-dir DIR]
                      [--seed FILE]... [--scenario NAME]... [--kubeconfig-out FILE]
                      [--bookmark-interval SECONDS]

  --listen ADDR            address to bind (default 127.0.0.1:0, a free port)
  --token TOKEN[=USER]     require this bearer token; USER is who it authenticates as
                           (default system:serviceaccount:sentry:sentry-kubernetes)
  --tls-dir DIR            serve HTTPS; write ca.crt, tls.crt and tls.key into DIR
  --seed FILE              create the objects in FILE (JSON, a List, or multi-document YAML)
  --scenario NAME          create a built-in scenario: demo, more-reasons
  --kubeconfig-out FILE    write a kubeconfig for this server to FILE
  --bookmark-interval S    send BOOKMARK events every S seconds on watches that allow them

Prints `listening on http(s)://127.0.0.1:PORT` as its first line; control API under /_fake/.";

struct Args {
    options: ApiServerOptions,
    seeds: Vec<PathBuf>,
    scenarios: Vec<String>,
    kubeconfig_out: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut options = ApiServerOptions::default();
    let mut seeds = Vec::new();
    let mut scenarios = Vec::new();
    let mut kubeconfig_out = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--listen" => {
                let v = value("--listen")?;
                options.listen = v.parse().map_err(|e| format!("--listen {v:?}: {e}"))?;
            }
            "--token" => {
                let v = value("--token")?;
                let (token, user) = match v.split_once('=') {
                    Some((t, u)) => (t.to_string(), u.to_string()),
                    None => (v.clone(), options.anonymous_user.clone()),
                };
                if token.is_empty() {
                    return Err("--token must not be empty".into());
                }
                options.tokens.push((token, user));
            }
            "--tls-dir" => {
                options.tls = true;
                options.tls_dir = Some(PathBuf::from(value("--tls-dir")?));
            }
            "--seed" => seeds.push(PathBuf::from(value("--seed")?)),
            "--scenario" => scenarios.push(value("--scenario")?),
            "--kubeconfig-out" => kubeconfig_out = Some(PathBuf::from(value("--kubeconfig-out")?)),
            "--bookmark-interval" => {
                let v = value("--bookmark-interval")?;
                let secs: f64 = v
                    .parse()
                    .map_err(|e| format!("--bookmark-interval {v:?}: {e}"))?;
                options.bookmark_interval = Some(std::time::Duration::from_secs_f64(secs));
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(Args {
        options,
        seeds,
        scenarios,
        kubeconfig_out,
    })
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(args) => args,
        Err(e) => {
            eprintln!("fake-apiserver: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let server = match FakeApiServer::start_with(args.options).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("fake-apiserver: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    for seed in &args.seeds {
        let loaded = std::fs::read(seed)
            .map_err(|e| e.to_string())
            .and_then(|bytes| parse_objects(&bytes))
            .and_then(|objects| server.create_all(objects).map_err(|e| e.to_string()));
        if let Err(e) = loaded {
            eprintln!("fake-apiserver: seed {}: {e}", seed.display());
            return ExitCode::from(2);
        }
    }
    for name in &args.scenarios {
        if let Err(e) = harness::scenarios::by_name(name, &server) {
            eprintln!("fake-apiserver: scenario {name}: {e}");
            return ExitCode::from(2);
        }
    }
    if let Some(path) = &args.kubeconfig_out
        && let Err(e) = server.write_kubeconfig(path)
    {
        eprintln!(
            "fake-apiserver: cannot write kubeconfig {}: {e}",
            path.display()
        );
        return ExitCode::from(1);
    }
    println!("listening on {}", server.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("can install a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    ExitCode::SUCCESS
}
