//! The Lease (`coordination.k8s.io/v1`, `SENTRY_K8S_LEASE_NAME` in the agent's namespace):
//! it holds the checkpoint (in an annotation) and, with leader election, the leadership.
//!
//! The keeper reads it at start (the checkpoint to resume from; one try at leadership),
//! then every `SENTRY_K8S_RETRY_PERIOD` renews or tries to take it ([`election`]) and writes
//! the ledger's checkpoint when it changed — only the leader writes. A takeover starts a new
//! [`Generation`] of watches resuming from the previous leader's checkpoint. At shutdown the
//! leader writes its last checkpoint and releases the Lease in one update, so a follower
//! takes over within a retry period. If RBAC forbids the Lease, the agent says so once and
//! runs as it would without one: reporting, without checkpoint or election.

pub mod election;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{Api, PostParams};
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::checkpoint::{Checkpoint, Ledger};
use crate::config::{Config, Switch};
use crate::leadership::{Generation, Leadership, LeaseWrite, Transition};
use crate::metrics::Metrics;
use election::{Decision, Observer, Record, decide};

/// The annotation holding the checkpoint.
pub const CHECKPOINT_ANNOTATION: &str = "k8s.sentry.io/checkpoint";

/// Where the Lease is and how it is used.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub election: bool,
    pub checkpoint: bool,
    pub duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

impl LeaseSettings {
    /// The settings for `config`; `in_cluster` decides an `auto` election, and
    /// `client_namespace` is the service account's or the kubeconfig context's namespace.
    pub fn from_config(config: &Config, in_cluster: bool, client_namespace: &str) -> Self {
        let namespace = config
            .lease_namespace
            .clone()
            .or_else(|| config.pod_namespace.clone())
            .unwrap_or_else(|| client_namespace.to_string());
        Self {
            name: config.lease_name.clone(),
            namespace: if namespace.is_empty() {
                "default".into()
            } else {
                namespace
            },
            identity: election::identity(config.pod_name.as_deref(), &config.hostname()),
            election: match config.leader_election {
                Switch::Auto => in_cluster,
                Switch::On => true,
                Switch::Off => false,
            },
            checkpoint: config.checkpoint,
            duration: config.lease_duration,
            renew_deadline: config.renew_deadline,
            retry_period: config.retry_period,
        }
    }
}

/// Why a Lease request failed.
enum LeaseError {
    Forbidden(String),
    NotFound,
    Conflict,
    Other(String),
}

/// The least time a round's requests are given, even with the renew deadline all but spent.
const MIN_ROUND: Duration = Duration::from_millis(100);

fn classify(error: kube::Error) -> LeaseError {
    match error {
        kube::Error::Api(status) if status.code == 403 => {
            LeaseError::Forbidden(status.message.clone())
        }
        kube::Error::Api(status) if status.code == 404 => LeaseError::NotFound,
        kube::Error::Api(status) if status.code == 409 => LeaseError::Conflict,
        other => LeaseError::Other(other.to_string()),
    }
}

fn record_of(lease: &Lease) -> Option<Record> {
    let spec = lease.spec.as_ref()?;
    Some(Record {
        holder: spec.holder_identity.clone().unwrap_or_default(),
        duration: Duration::from_secs(spec.lease_duration_seconds.unwrap_or(15).max(1) as u64),
        renewed: spec.renew_time.as_ref().map(|t| t.0.to_string()),
        transitions: spec.lease_transitions.unwrap_or(0),
    })
}

fn checkpoint_of(lease: &Lease) -> Option<Checkpoint> {
    let text = lease
        .metadata
        .annotations
        .as_ref()?
        .get(CHECKPOINT_ANNOTATION)?;
    match Checkpoint::decode(text) {
        Ok(checkpoint) => Some(checkpoint),
        Err(e) => {
            warn!(
                annotation = CHECKPOINT_ANNOTATION,
                "the Lease's checkpoint is unreadable ({e}); starting as if there were none"
            );
            None
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// What start-up decided.
pub struct Begun {
    /// The first generation: its checkpoint and whether it reports.
    pub generation: Generation,
    /// The task keeping the Lease, unless it is not used (dry run, switched off, forbidden).
    pub keeper: Option<Keeper>,
}

/// Reads the Lease (creating it if missing) and tries once for leadership.
pub async fn begin(
    client: kube::Client,
    settings: LeaseSettings,
    ledger: Arc<Mutex<Ledger>>,
    leadership: Leadership,
    metrics: Metrics,
) -> Begun {
    let mut keeper = Keeper {
        api: Api::namespaced(client, &settings.namespace),
        settings,
        ledger,
        leadership,
        generations: None,
        generation: 0,
        metrics,
        observer: Observer::default(),
        renewed: None,
        written: None,
        written_at: None,
    };
    let alone = Generation {
        number: 0,
        resume: None,
        leader: true,
    };
    let lease = match keeper.get_or_create().await {
        Ok(lease) => lease,
        Err(LeaseError::Forbidden(message)) => {
            keeper.forbidden(&message);
            return Begun {
                generation: alone,
                keeper: None,
            };
        }
        Err(LeaseError::NotFound) => {
            keeper.forbidden(&format!(
                "namespace {:?} not found; set SENTRY_K8S_LEASE_NAMESPACE",
                keeper.settings.namespace
            ));
            return Begun {
                generation: alone,
                keeper: None,
            };
        }
        // Unreachable for now: report (never silent); the keeper's rounds settle who leads.
        Err(_) => None,
    };
    let checkpoint = lease
        .as_ref()
        .and_then(checkpoint_of)
        .filter(|_| keeper.settings.checkpoint);
    let leader = match (keeper.settings.election, lease) {
        (true, Some(lease)) => match keeper.elect(lease).await {
            Ok(leader) => leader,
            Err(LeaseError::Forbidden(message)) => {
                keeper.forbidden(&message);
                return Begun {
                    generation: alone,
                    keeper: None,
                };
            }
            Err(_) => false,
        },
        _ => true,
    };
    keeper.ledger.lock().unwrap().reset(checkpoint.as_ref());
    keeper.leadership.set(leader);
    keeper.metrics.leader.set(i64::from(leader));
    if keeper.settings.election && leader {
        // Won at start-up: as much an acquisition as a later takeover.
        keeper.metrics.leader_transitions.inc(Transition::Acquired);
    }
    let settings = &keeper.settings;
    info!(
        lease = %format!("{}/{}", settings.namespace, settings.name),
        identity = %settings.identity,
        election = settings.election,
        leader,
        resume = checkpoint.is_some(),
        "{}",
        match (settings.election, leader, checkpoint.is_some()) {
            (true, true, _) => "leading: this replica reports",
            (true, false, _) => "following: another replica reports; watching to take over",
            (false, _, true) => "resuming from the checkpoint in the Lease",
            (false, _, false) => "no checkpoint yet: a first start",
        }
    );
    Begun {
        generation: Generation {
            number: 0,
            resume: checkpoint.map(Arc::new),
            leader,
        },
        keeper: Some(keeper),
    }
}

/// Keeps the Lease: renews it, takes it over, writes checkpoints, releases it.
pub struct Keeper {
    api: Api<Lease>,
    settings: LeaseSettings,
    ledger: Arc<Mutex<Ledger>>,
    leadership: Leadership,
    generations: Option<watch::Sender<Generation>>,
    generation: u64,
    metrics: Metrics,
    observer: Observer,
    /// When this process last renewed (or took) the Lease.
    renewed: Option<Instant>,
    /// The last checkpoint written, and when.
    written: Option<String>,
    written_at: Option<Instant>,
}

/// Asks the keeper to write its last checkpoint and release the Lease; resolves when done.
pub type Release = oneshot::Sender<oneshot::Sender<()>>;

impl Keeper {
    async fn get_or_create(&mut self) -> Result<Option<Lease>, LeaseError> {
        match self.api.get(&self.settings.name).await.map_err(classify) {
            Ok(lease) => Ok(Some(lease)),
            Err(LeaseError::NotFound) => {
                let holder = self
                    .settings
                    .election
                    .then(|| self.settings.identity.clone());
                let lease = Lease {
                    metadata: kube::api::ObjectMeta {
                        name: Some(self.settings.name.clone()),
                        namespace: Some(self.settings.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: holder,
                        lease_duration_seconds: Some(self.settings.duration.as_secs().max(1) as i32),
                        acquire_time: Some(now()),
                        renew_time: Some(now()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                match self
                    .api
                    .create(&PostParams::default(), &lease)
                    .await
                    .map_err(classify)
                {
                    Ok(created) => {
                        self.metrics.lease_writes.inc(LeaseWrite::Written);
                        info!(lease = %self.settings.name, namespace = %self.settings.namespace, "created the Lease");
                        Ok(Some(created))
                    }
                    // Someone created it meanwhile: read theirs.
                    Err(LeaseError::Conflict) => self
                        .api
                        .get(&self.settings.name)
                        .await
                        .map(Some)
                        .map_err(classify),
                    Err(e) => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    }

    fn forbidden(&self, message: &str) {
        self.metrics.lease_writes.inc(LeaseWrite::Forbidden);
        warn!(
            lease = %format!("{}/{}", self.settings.namespace, self.settings.name),
            "cannot use the Lease ({message}); running without checkpoint and leader election: \
             a restart may miss or repeat events. Grant get, create and update on leases \
             (coordination.k8s.io) to enable them"
        );
        self.leadership.set(true);
        self.metrics.leader.set(1);
    }

    /// One try at leadership with a fresh Lease: renew it if ours, take it if free or
    /// expired. True when this process holds it afterwards.
    async fn elect(&mut self, mut lease: Lease) -> Result<bool, LeaseError> {
        let now_instant = Instant::now();
        let record = record_of(&lease);
        if let Some(record) = &record {
            self.observer.observe(record, now_instant);
        }
        let decision = decide(
            &self.settings.identity,
            record.as_ref(),
            &self.observer,
            now_instant,
        );
        let taking = match decision {
            Decision::Renew => false,
            Decision::Acquire | Decision::Create => true,
            Decision::Wait => return Ok(false),
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if taking {
            spec.holder_identity = Some(self.settings.identity.clone());
            spec.acquire_time = Some(now());
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(self.settings.duration.as_secs().max(1) as i32);
        spec.renew_time = Some(now());
        let checkpoint = (self.leadership.is_leader() && !taking)
            .then(|| self.annotate(&mut lease))
            .flatten();
        match self.replace(&lease).await {
            Ok(()) => {
                self.renewed = Some(now_instant);
                if let Some(text) = checkpoint {
                    self.wrote(text);
                }
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Puts the ledger's checkpoint on the Lease if it changed since the last write (its
    /// time aside); returns what changed, to remember once written.
    fn annotate(&self, lease: &mut Lease) -> Option<String> {
        if !self.settings.checkpoint {
            return None;
        }
        let mut checkpoint = self.ledger.lock().unwrap().snapshot();
        let unstamped = checkpoint.encode();
        if self.written.as_deref() == Some(unstamped.as_str())
            || unstamped == Checkpoint::default().encode()
        {
            return None;
        }
        checkpoint.at = Some(chrono::Utc::now());
        lease
            .metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(CHECKPOINT_ANNOTATION.to_string(), checkpoint.encode());
        Some(unstamped)
    }

    /// Remembers a checkpoint written (the write itself was counted by `replace`).
    fn wrote(&mut self, text: String) {
        self.written = Some(text);
        self.written_at = Some(Instant::now());
    }

    async fn replace(&self, lease: &Lease) -> Result<(), LeaseError> {
        let result = self
            .api
            .replace(&self.settings.name, &PostParams::default(), lease)
            .await
            .map(|_| ())
            .map_err(classify);
        match &result {
            Ok(()) => self.metrics.lease_writes.inc(LeaseWrite::Written),
            Err(LeaseError::Conflict) => self.metrics.lease_writes.inc(LeaseWrite::Conflict),
            Err(LeaseError::Forbidden(_)) => self.metrics.lease_writes.inc(LeaseWrite::Forbidden),
            Err(_) => self.metrics.lease_writes.inc(LeaseWrite::Failed),
        }
        result
    }

    fn take_over(&mut self, lease: &Lease) {
        // A predecessor that left no checkpoint ran all the same: everything stored is news.
        let led_before =
            record_of(lease).is_some_and(|r| !r.holder.is_empty() || r.transitions > 0);
        let checkpoint = checkpoint_of(lease)
            .or_else(|| led_before.then(Checkpoint::everything_new))
            .filter(|_| self.settings.checkpoint);
        self.ledger.lock().unwrap().reset(checkpoint.as_ref());
        self.generation += 1;
        info!(
            identity = %self.settings.identity,
            resume = checkpoint.is_some(),
            "acquired the leadership: this replica reports from now on, after the previous leader's checkpoint"
        );
        self.metrics.leader_transitions.inc(Transition::Acquired);
        self.metrics.leader.set(1);
        self.leadership.set(true);
        if let Some(generations) = &self.generations {
            let _ = generations.send(Generation {
                number: self.generation,
                resume: checkpoint.map(Arc::new),
                leader: true,
            });
        }
    }

    fn step_down(&mut self, why: &str) {
        if !self.leadership.is_leader() {
            return;
        }
        self.leadership.set(false);
        self.renewed = None;
        self.metrics.leader.set(0);
        self.metrics.leader_transitions.inc(Transition::Lost);
        warn!(identity = %self.settings.identity, "lost the leadership ({why}): this replica stops reporting");
    }

    /// One round: renew, take over, or write the checkpoint. False when the Lease can no
    /// longer be used at all (RBAC): the agent reports on without it.
    ///
    /// The requests of a round are bounded: a leader waits at most until its renew deadline
    /// (an apiserver that accepts the request and never answers must not keep it leading
    /// past its Lease while another replica takes over), anyone else one renew deadline.
    async fn round(&mut self) -> bool {
        let budget = match (self.leadership.is_leader(), self.renewed) {
            (true, Some(at)) => self
                .settings
                .renew_deadline
                .saturating_sub(at.elapsed())
                .max(MIN_ROUND),
            _ => self.settings.renew_deadline.max(MIN_ROUND),
        };
        let usable = match tokio::time::timeout(budget, self.exchange()).await {
            Ok(usable) => usable,
            Err(_) => {
                debug!(
                    ?budget,
                    "the Lease request did not complete in time; trying again"
                );
                true
            }
        };
        if !usable {
            return false;
        }
        if self.leadership.is_leader()
            && self.settings.election
            && self
                .renewed
                .is_some_and(|at| at.elapsed() >= self.settings.renew_deadline)
        {
            self.step_down("could not renew the Lease within SENTRY_K8S_RENEW_DEADLINE");
        }
        if let Some(at) = self.written_at {
            self.metrics
                .checkpoint_age
                .set(at.elapsed().as_secs() as i64);
        }
        true
    }

    /// The requests of one round; false when the Lease is forbidden.
    async fn exchange(&mut self) -> bool {
        let was_leader = self.leadership.is_leader();
        match self.get_or_create().await {
            Err(LeaseError::Forbidden(message)) => {
                // Granted before, revoked now: keep reporting rather than go silent.
                self.forbidden(&message);
                return false;
            }
            Err(LeaseError::Other(message)) => {
                debug!("cannot read the Lease: {message}; trying again");
            }
            Err(_) => {}
            Ok(None) => {}
            Ok(Some(lease)) if self.settings.election => match self.elect(lease.clone()).await {
                Ok(true) if !was_leader => self.take_over(&lease),
                Ok(false) if was_leader => self.step_down("another replica holds the Lease"),
                Err(LeaseError::Forbidden(message)) => {
                    self.forbidden(&message);
                    return false;
                }
                _ => {}
            },
            Ok(Some(mut lease)) => {
                if let Some(text) = self.annotate(&mut lease) {
                    match self.replace(&lease).await {
                        Ok(()) => self.wrote(text),
                        Err(LeaseError::Forbidden(message)) => {
                            self.forbidden(&message);
                            return false;
                        }
                        Err(_) => {}
                    }
                }
            }
        }
        true
    }

    /// Writes the last checkpoint and, if leading, releases the Lease (one update).
    async fn release(&mut self) {
        let Ok(Some(mut lease)) = self.get_or_create().await else {
            return;
        };
        let leading = self.leadership.is_leader();
        if self.settings.election && !leading {
            return;
        }
        let text = self.annotate(&mut lease);
        if self.settings.election {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() != Some(self.settings.identity.as_str()) {
                return;
            }
            spec.holder_identity = Some(String::new());
            spec.lease_duration_seconds = Some(1);
            spec.renew_time = Some(now());
        } else if text.is_none() {
            return;
        }
        if self.replace(&lease).await.is_ok() {
            if let Some(text) = text {
                self.wrote(text);
            }
            if self.settings.election {
                self.leadership.set(false);
                self.metrics.leader.set(0);
                info!(identity = %self.settings.identity, "released the leadership with the last checkpoint");
            }
        }
    }

    /// Keeps the Lease every retry period until asked to release it.
    pub async fn run(
        mut self,
        generations: watch::Sender<Generation>,
        release: oneshot::Receiver<oneshot::Sender<()>>,
    ) {
        self.generations = Some(generations);
        let mut release = std::pin::pin!(release);
        let mut tick = tokio::time::interval(self.settings.retry_period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                biased;
                asked = &mut release => {
                    self.release().await;
                    if let Ok(done) = asked {
                        let _ = done.send(());
                    }
                    return;
                }
                _ = tick.tick() => {
                    if !self.round().await {
                        // Without the Lease: report on, and still answer the release.
                        if let Ok(done) = release.await {
                            let _ = done.send(());
                        }
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn namespace(vars: &[(&str, &str)], client_namespace: &str) -> String {
        let (config, _) = Config::from_vars(vars.iter().copied()).unwrap();
        LeaseSettings::from_config(&config, true, client_namespace).namespace
    }

    #[test]
    fn the_lease_namespace_is_the_setting_else_the_pods_else_the_clients_else_default() {
        let both = [
            ("SENTRY_K8S_LEASE_NAMESPACE", "sentry"),
            ("POD_NAMESPACE", "agents"),
        ];
        assert_eq!(namespace(&both, "from-token"), "sentry");
        assert_eq!(
            namespace(&[("POD_NAMESPACE", "agents")], "from-token"),
            "agents"
        );
        assert_eq!(namespace(&[], "from-token"), "from-token");
        assert_eq!(namespace(&[], ""), "default");
        // Blank means unset, as for every setting.
        assert_eq!(
            namespace(
                &[
                    ("SENTRY_K8S_LEASE_NAMESPACE", ""),
                    ("POD_NAMESPACE", "agents")
                ],
                ""
            ),
            "agents"
        );
    }
}
