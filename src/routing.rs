//! Where an event goes: one decision from the annotations on its object, its owners and its
//! namespace, and the operator's switch (`SENTRY_K8S_CUSTOM_DSNS`), to a DSN.
//!
//! With the switch off (the default, as in the Go agent) every event goes to `SENTRY_DSN`
//! whatever the annotations say: an annotation must not send a workload's events to a
//! Sentry of its author's choosing unless the operator opted in. With it on, the nearest
//! `k8s.sentry.io/dsn` wins: the object's, then its owners' (nearest first), then its
//! namespace's. An invalid annotation falls back to the main DSN, warned once per object.

use std::num::NonZeroUsize;
use std::str::FromStr;

use lru::LruCache;
use sentry::types::Dsn;
use tracing::warn;

use crate::event::ObjectRef;
use crate::labels::label_enum;
use crate::owners::cache::Meta;
use crate::owners::chain::Chain;
use crate::redact::redact_dsn;

/// The annotation naming a per-object DSN.
pub const DSN_ANNOTATION: &str = "k8s.sentry.io/dsn";

/// Objects with an invalid DSN annotation remembered, so each is warned about once.
const WARNED_REMEMBERED: usize = 10_000;

label_enum! {
    /// What routing did with an annotation (`sentry_k8s_custom_dsn_total{outcome}`).
    pub enum RouteOutcome {
        /// The event goes to the annotated DSN.
        Routed = "routed",
        /// The annotation is not a DSN; the event goes to the main one.
        Invalid = "invalid",
    }
}

/// Where an event is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    /// `SENTRY_DSN`.
    Main,
    /// A DSN from an annotation.
    Custom(Dsn),
}

/// The decision, with what an operator should hear about.
#[derive(Debug, PartialEq)]
pub struct Route<'a> {
    pub destination: Destination,
    /// Set when an annotation was followed or refused.
    pub outcome: Option<RouteOutcome>,
    /// The annotated object and the parse error, when the annotation was refused.
    pub invalid: Option<(&'a ObjectRef, String)>,
}

/// Whether the decision depends on the namespace's annotations (so they must be read).
pub fn needs_namespace(chain: &Chain, custom_dsns: bool) -> bool {
    custom_dsns && nearest(chain).is_none()
}

/// The nearest annotation on the object or its owners.
fn nearest(chain: &Chain) -> Option<(&ObjectRef, &str)> {
    chain
        .links
        .iter()
        .find_map(|l| Some((&l.object, l.meta.as_ref()?.annotation(DSN_ANNOTATION)?)))
}

/// The destination of an event about `chain`'s object, given its namespace's metadata.
pub fn route<'a>(chain: &'a Chain, namespace: Option<&'a Meta>, custom_dsns: bool) -> Route<'a> {
    let main = Route {
        destination: Destination::Main,
        outcome: None,
        invalid: None,
    };
    if !custom_dsns {
        return main;
    }
    let annotated = nearest(chain).or_else(|| {
        let namespace = namespace?;
        Some((&namespace.object, namespace.annotation(DSN_ANNOTATION)?))
    });
    let Some((object, raw)) = annotated else {
        return main;
    };
    match Dsn::from_str(raw.trim()) {
        Ok(dsn) => Route {
            destination: Destination::Custom(dsn),
            outcome: Some(RouteOutcome::Routed),
            invalid: None,
        },
        Err(e) => Route {
            destination: Destination::Main,
            outcome: Some(RouteOutcome::Invalid),
            invalid: Some((object, format!("{:?} ({e})", redact_dsn(raw)))),
        },
    }
}

/// [`route`] with its warning policy: one warning per object with an invalid annotation.
pub struct Router {
    custom_dsns: bool,
    warned: LruCache<String, ()>,
}

impl Router {
    pub fn new(custom_dsns: bool) -> Self {
        Self {
            custom_dsns,
            warned: crate::bounded::lru(NonZeroUsize::new(WARNED_REMEMBERED).expect("non-zero")),
        }
    }

    pub fn needs_namespace(&self, chain: &Chain) -> bool {
        needs_namespace(chain, self.custom_dsns)
    }

    pub fn route<'a>(&mut self, chain: &'a Chain, namespace: Option<&'a Meta>) -> Route<'a> {
        let route = route(chain, namespace, self.custom_dsns);
        if let Some((object, error)) = &route.invalid {
            let key = format!("{}/{}/{}", object.kind, object.namespace, object.name);
            if self.warned.put(key, ()).is_none() {
                warn!(
                    kind = %object.kind,
                    namespace = %object.namespace,
                    name = %object.name,
                    "invalid {DSN_ANNOTATION} annotation {error}; using the main DSN"
                );
            }
        }
        route
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::owners::chain::Link;

    fn object(kind: &str, name: &str) -> ObjectRef {
        ObjectRef {
            kind: kind.into(),
            name: name.into(),
            namespace: "shop".into(),
            ..Default::default()
        }
    }

    fn meta(object: &ObjectRef, dsn: Option<&str>) -> Meta {
        Meta {
            object: object.clone(),
            annotations: dsn
                .map(|d| vec![(DSN_ANNOTATION.to_string(), d.to_string())])
                .unwrap_or_default(),
            ..Meta::default()
        }
    }

    /// Pod → ReplicaSet → Deployment, each with the given annotation.
    fn chain(pod: Option<&str>, replicaset: Option<&str>, deployment: Option<&str>) -> Chain {
        let links = [
            ("Pod", "web-1", pod),
            ("ReplicaSet", "web-7d", replicaset),
            ("Deployment", "web", deployment),
        ]
        .into_iter()
        .map(|(kind, name, dsn)| {
            let object = object(kind, name);
            Link {
                meta: Some(Arc::new(meta(&object, dsn))),
                object,
            }
        })
        .collect();
        Chain { links }
    }

    const POD: &str = "https://pod@sentry.example.com/1";
    const DEPLOYMENT: &str = "https://deployment@sentry.example.com/2";
    const NAMESPACE: &str = "https://namespace@sentry.example.com/3";

    fn namespace() -> Meta {
        meta(&object("Namespace", "shop"), Some(NAMESPACE))
    }

    fn custom(dsn: &str) -> Destination {
        Destination::Custom(dsn.parse().unwrap())
    }

    #[test]
    fn with_custom_dsns_off_every_annotation_is_ignored() {
        let ns = namespace();
        let annotated = chain(Some(POD), None, Some(DEPLOYMENT));
        let route = route(&annotated, Some(&ns), false);
        assert_eq!(route.destination, Destination::Main);
        assert_eq!(route.outcome, None);
        assert!(!needs_namespace(&chain(None, None, None), false));
    }

    #[test]
    fn the_nearest_annotation_wins_object_then_owners_then_namespace() {
        let ns = namespace();
        let r = |c: &Chain| route(c, Some(&ns), true).destination;
        assert_eq!(r(&chain(Some(POD), None, Some(DEPLOYMENT))), custom(POD));
        assert_eq!(r(&chain(None, None, Some(DEPLOYMENT))), custom(DEPLOYMENT));
        let bare = chain(None, None, None);
        assert!(needs_namespace(&bare, true));
        assert_eq!(r(&bare), custom(NAMESPACE));
        assert_eq!(route(&bare, None, true).destination, Destination::Main);
        assert_eq!(
            route(&bare, Some(&ns), true).outcome,
            Some(RouteOutcome::Routed)
        );
    }

    #[test]
    fn an_invalid_annotation_goes_to_the_main_dsn_and_names_its_object() {
        let c = chain(None, Some("https://key@"), Some(DEPLOYMENT));
        let route = route(&c, None, true);
        assert_eq!(route.destination, Destination::Main);
        assert_eq!(route.outcome, Some(RouteOutcome::Invalid));
        let (object, error) = route.invalid.unwrap();
        assert_eq!(object.kind, "ReplicaSet");
        assert!(!error.contains("key@"), "the key is redacted: {error}");
    }

    #[test]
    fn the_router_warns_once_per_object() {
        let mut router = Router::new(true);
        let c = chain(Some("not a dsn"), None, None);
        for _ in 0..3 {
            assert_eq!(router.route(&c, None).outcome, Some(RouteOutcome::Invalid));
        }
        assert_eq!(router.warned.len(), 1);
    }
}
