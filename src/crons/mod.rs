//! Sentry Crons check-ins for CronJob runs (`SENTRY_K8S_MONITOR_CRONJOBS`): a Job started
//! by a CronJob is an `in_progress` check-in, its completion an `ok` or `error` one, each
//! sent once. CronJobs are watched too, so a schedule or time-zone edit reaches the next
//! check-in, the monitor [`slug`] can be kept from colliding, and a check-in goes where the
//! CronJob's events go (its `k8s.sentry.io/dsn`, when custom DSNs are on). Watch errors are
//! counted and shown in readiness like the event watches'.

pub mod checkin;
pub mod slug;

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use futures::{StreamExt, stream};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use lru::LruCache;
use sentry::protocol::MonitorConfig;
use tracing::{debug, info, warn};

use crate::config::Config;
use crate::delivery::Delivery;
use crate::event::ObjectRef;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::owners::OwnerResolver;
use crate::owners::cache::Meta;
use crate::owners::chain::{Chain, Link};
use crate::routing::Router;
use crate::shutdown::Shutdown;
use crate::source::{self, WatchedResource, scope_name, watch_scopes};
use checkin::{Phase, check_in, monitor_config, run_of};
use slug::SlugBook;

/// Runs remembered, so each check-in is sent once (a run lasts minutes to hours).
const RUNS_REMEMBERED: usize = 10_000;
/// CronJobs whose schedule and annotations are kept.
const CRONJOBS_KEPT: usize = 10_000;

/// What the monitor keeps of a CronJob.
struct Known {
    config: Option<MonitorConfig>,
    meta: Arc<Meta>,
}

fn known(cronjob: &CronJob) -> Option<((String, String), Known)> {
    let m = &cronjob.metadata;
    let (namespace, name) = (m.namespace.clone()?, m.name.clone()?);
    let annotations = m
        .annotations
        .iter()
        .flatten()
        .filter(|(k, _)| k.starts_with("k8s.sentry.io/"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let meta = Meta {
        object: ObjectRef {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            name: name.clone(),
            namespace: namespace.clone(),
            uid: m.uid.clone().unwrap_or_default(),
            field_path: String::new(),
        },
        annotations,
        ..Meta::default()
    };
    let known = Known {
        config: monitor_config(cronjob),
        meta: Arc::new(meta),
    };
    Some(((namespace, name), known))
}

/// One item of the merged watches (a failure was already logged and counted).
enum Watched {
    CronJob(usize, Box<watcher::Event<CronJob>>),
    Job(usize, Box<watcher::Event<Job>>),
    Failed,
}

pub struct CronMonitor {
    client: kube::Client,
    config: Arc<Config>,
    delivery: Arc<Delivery>,
    resolver: OwnerResolver,
    router: Router,
    metrics: Metrics,
    health: Arc<Health>,
    /// Index of this monitor's first watch in `health`: CronJob watches, then Job watches.
    first_watch: usize,
    cronjobs: HashMap<(String, String), Known>,
    slugs: SlugBook,
    told_full: bool,
    sent: LruCache<String, Phase>,
}

/// The readiness names of the monitor's watches, in the order it reports them.
pub fn watch_names(config: &Config) -> Vec<String> {
    let scopes = watch_scopes(&config.namespaces);
    [WatchedResource::CronJobs, WatchedResource::Jobs]
        .iter()
        .flat_map(|r| {
            scopes
                .iter()
                .map(move |s| format!("{} in {}", r.as_str(), scope_name(s)))
        })
        .collect()
}

impl CronMonitor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        client: kube::Client,
        config: Arc<Config>,
        delivery: Arc<Delivery>,
        resolver: OwnerResolver,
        metrics: Metrics,
        health: Arc<Health>,
        first_watch: usize,
        slugs: SlugBook,
    ) -> Self {
        Self {
            router: Router::new(config.custom_dsns),
            client,
            config,
            delivery,
            resolver,
            metrics,
            health,
            first_watch,
            cronjobs: HashMap::new(),
            slugs,
            told_full: false,
            sent: crate::bounded::lru(NonZeroUsize::new(RUNS_REMEMBERED).expect("non-zero")),
        }
    }

    fn remember(&mut self, cronjob: &CronJob) {
        let Some((key, known)) = known(cronjob) else {
            return;
        };
        if self.cronjobs.len() >= CRONJOBS_KEPT && !self.cronjobs.contains_key(&key) {
            if !self.told_full {
                self.told_full = true;
                warn!(
                    kept = CRONJOBS_KEPT,
                    "too many CronJobs to keep their schedules; check-ins of the others go without a monitor config"
                );
            }
            return;
        }
        self.slugs.insert(&key.0, &key.1);
        self.cronjobs.insert(key, known);
    }

    fn forget(&mut self, cronjob: &CronJob) {
        if let Some((key, _)) = known(cronjob) {
            self.slugs.remove(&key.0, &key.1);
            self.cronjobs.remove(&key);
        }
    }

    async fn observe(&mut self, job: &Job, listing: bool) {
        let Some(run) = run_of(job) else { return };
        let previous = self.sent.get(&run.job_uid).copied();
        if previous.is_some_and(|p| p >= run.phase) {
            return;
        }
        // Runs that ended before the agent started are history.
        if listing && previous.is_none() && run.phase != Phase::Running {
            self.sent.put(run.job_uid.clone(), run.phase);
            return;
        }
        let key = (run.namespace.clone(), run.cronjob.clone());
        let known = self.cronjobs.get(&key);
        let slug = self.slugs.slug(
            self.config.cluster_name.as_deref(),
            &run.namespace,
            &run.cronjob,
        );
        let check_in = check_in(
            &run,
            slug,
            known.and_then(|k| k.config.clone()),
            self.config.environment.as_deref(),
        );
        let object = ObjectRef {
            api_version: "batch/v1".into(),
            kind: "CronJob".into(),
            name: run.cronjob.clone(),
            namespace: run.namespace.clone(),
            ..Default::default()
        };
        let chain = Chain {
            links: vec![Link {
                object,
                meta: known.map(|k| k.meta.clone()),
            }],
        };
        let namespace = if self.router.needs_namespace(&chain) {
            self.resolver.namespace(&run.namespace).await
        } else {
            None
        };
        let route = self.router.route(&chain, namespace.as_deref());
        if let Some(outcome) = route.outcome {
            self.metrics.custom_dsn.inc(outcome);
        }
        debug!(cronjob = %run.cronjob, namespace = %run.namespace, slug = %check_in.monitor_slug, status = ?check_in.status, "check-in");
        self.delivery.check_in(check_in, &route.destination).await;
        self.sent.put(run.job_uid, run.phase);
    }

    fn ready(&self, watch: usize) {
        if self.health.watch_ready(self.first_watch + watch) {
            self.metrics.watches_ready.inc();
        }
    }

    /// Watches CronJobs and Jobs until the shutdown is triggered.
    pub async fn run(mut self, shutdown: Shutdown) {
        let scopes = watch_scopes(&self.config.namespaces);
        let n = scopes.len();
        let metrics = self.metrics.clone();
        let watch = |resource: WatchedResource, scope: &Option<String>| {
            let metrics = metrics.clone();
            let scope = scope.clone();
            move |error: watcher::Error| {
                let kind = source::report_error(resource, &scope, &error);
                metrics.watch_errors.inc((resource, kind));
                Watched::Failed
            }
        };
        let cronjobs = scopes.iter().enumerate().map(|(i, scope)| {
            let api: Api<CronJob> = match scope {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            let failed = watch(WatchedResource::CronJobs, scope);
            watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |item| match item {
                    Ok(event) => Watched::CronJob(i, Box::new(event)),
                    Err(error) => failed(error),
                })
                .boxed()
        });
        let cronjobs: Vec<_> = cronjobs.collect();
        let jobs = scopes.iter().enumerate().map(|(i, scope)| {
            let api: Api<Job> = match scope {
                Some(ns) => Api::namespaced(self.client.clone(), ns),
                None => Api::all(self.client.clone()),
            };
            let failed = watch(WatchedResource::Jobs, scope);
            watcher(api, watcher::Config::default())
                .default_backoff()
                .map(move |item| match item {
                    Ok(event) => Watched::Job(i, Box::new(event)),
                    Err(error) => failed(error),
                })
                .boxed()
        });
        let jobs: Vec<_> = jobs.collect();
        info!(watches = 2 * n, "monitoring CronJob runs with Sentry Crons");
        let mut cronjobs = stream::select_all(cronjobs);
        // Schedules first: a run's first check-in upserts its monitor with them.
        let mut synced = vec![false; n];
        while !synced.iter().all(|s| *s) {
            tokio::select! {
                biased;
                _ = shutdown.triggered() => return,
                item = cronjobs.next() => match item {
                    Some(item) => self.handle(item, &mut synced).await,
                    None => return,
                },
            }
        }
        let mut watched = stream::select(cronjobs, stream::select_all(jobs));
        loop {
            tokio::select! {
                biased;
                _ = shutdown.triggered() => return,
                item = watched.next() => match item {
                    Some(item) => self.handle(item, &mut synced).await,
                    None => return,
                },
            }
        }
    }

    async fn handle(&mut self, item: Watched, synced: &mut [bool]) {
        let n = synced.len();
        match item {
            Watched::CronJob(i, event) => match *event {
                watcher::Event::InitApply(cronjob) | watcher::Event::Apply(cronjob) => {
                    self.remember(&cronjob)
                }
                watcher::Event::Delete(cronjob) => self.forget(&cronjob),
                watcher::Event::Init => {
                    self.metrics.relists.inc();
                }
                watcher::Event::InitDone => {
                    synced[i] = true;
                    self.ready(i);
                }
            },
            Watched::Job(i, event) => match *event {
                watcher::Event::InitApply(job) => self.observe(&job, true).await,
                watcher::Event::Apply(job) => self.observe(&job, false).await,
                watcher::Event::InitDone => self.ready(n + i),
                watcher::Event::Init => {
                    self.metrics.relists.inc();
                }
                watcher::Event::Delete(_) => {}
            },
            Watched::Failed => {}
        }
    }
}
