//! How long the fake servers take to start and answer (`cargo bench -p harness`). Prints
//! numbers; asserts nothing (targets are checked by reading them, not by timed tests).

use std::time::{Duration, Instant};

use harness::{ApiServerOptions, FakeApiServer, SentrySink};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, ListParams};

fn report(what: &str, samples: &mut [Duration]) {
    samples.sort();
    let median = samples[samples.len() / 2];
    let worst = samples[samples.len() - 1];
    println!(
        "{what:<48} median {:>8.2} ms   max {:>8.2} ms",
        median.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
}

fn main() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        const RUNS: usize = 50;
        let mut plain = Vec::new();
        let mut first_list = Vec::new();
        let mut tls = Vec::new();
        let mut sink = Vec::new();
        for _ in 0..RUNS {
            let t = Instant::now();
            let server = FakeApiServer::start().await.unwrap();
            plain.push(t.elapsed());
            let api: Api<Namespace> = Api::all(server.client());
            api.list(&ListParams::default()).await.unwrap();
            first_list.push(t.elapsed());

            let t = Instant::now();
            let _server =
                FakeApiServer::start_with(ApiServerOptions::default().tls(None).token("t", "u"))
                    .await
                    .unwrap();
            tls.push(t.elapsed());

            let t = Instant::now();
            let _sink = SentrySink::start().await.unwrap();
            sink.push(t.elapsed());
        }
        report("fake apiserver start (plain HTTP)", &mut plain);
        report("fake apiserver start + first kube list", &mut first_list);
        report("fake apiserver start (TLS, new CA, token)", &mut tls);
        report("sentry sink start", &mut sink);
    });
}
