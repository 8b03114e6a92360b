//! Monitor slugs. The Go agent sends the CronJob's name and Sentry slugifies it
//! (`report.v2` becomes `reportv2`); we send that same slug, so monitors carry on after a
//! switch. Two CronJobs must never share a monitor, though: when a name exists in more than
//! one watched namespace, or `SENTRY_K8S_CLUSTER_NAME` is set (several clusters may report
//! into one project), the slug is qualified by cluster and namespace.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, RwLock};

/// Sentry's longest monitor slug.
pub const MAX_SLUG: usize = 50;

/// The CronJobs known, by name: whether a name collides across namespaces. Shared by the
/// Crons monitor (which keeps it from its CronJob watch) and the events' `monitor` context.
#[derive(Clone, Debug, Default)]
pub struct SlugBook(Arc<RwLock<HashMap<String, BTreeSet<String>>>>);

impl SlugBook {
    pub fn insert(&self, namespace: &str, name: &str) {
        self.0
            .write()
            .unwrap()
            .entry(name.to_string())
            .or_default()
            .insert(namespace.to_string());
    }

    pub fn remove(&self, namespace: &str, name: &str) {
        let mut book = self.0.write().unwrap();
        if let Some(namespaces) = book.get_mut(name) {
            namespaces.remove(namespace);
            if namespaces.is_empty() {
                book.remove(name);
            }
        }
    }

    /// The monitor slug of CronJob `name` in `namespace`, as [`monitor_slug`] decides it
    /// with what the book knows.
    pub fn slug(&self, cluster: Option<&str>, namespace: &str, name: &str) -> String {
        let unique = self
            .0
            .read()
            .unwrap()
            .get(name)
            .is_none_or(|namespaces| namespaces.iter().all(|ns| ns == namespace));
        monitor_slug(cluster, namespace, name, unique)
    }
}

/// Sentry's slugify (Django's): lowercase; only letters, digits, `_`, `-` and whitespace
/// kept; runs of `-` and whitespace become one `-`; `-` and `_` trimmed from both ends;
/// at most [`MAX_SLUG`] characters.
pub fn slugify(text: &str) -> String {
    let slug = uncut(text);
    let cut: String = slug.chars().take(MAX_SLUG).collect();
    cut.trim_end_matches('-').to_string()
}

/// [`slugify`] without the length limit.
fn uncut(text: &str) -> String {
    let mut slug = String::with_capacity(text.len());
    let mut dash = false;
    for c in text.chars().map(|c| c.to_ascii_lowercase()) {
        if c == '-' || c.is_whitespace() {
            dash = true;
        } else if c.is_ascii_alphanumeric() || c == '_' {
            if dash && !slug.is_empty() {
                slug.push('-');
            }
            dash = false;
            slug.push(c);
        }
    }
    slug.trim_matches(|c| c == '-' || c == '_').to_string()
}

/// The monitor slug of CronJob `name` in `namespace`: the Go agent's when it cannot collide
/// (`unique`: no other watched namespace has a CronJob of that name, and no cluster name is
/// set), else qualified by cluster and namespace — with a hash of the whole when that is
/// longer than Sentry keeps, so that cutting cannot make two equal.
pub fn monitor_slug(cluster: Option<&str>, namespace: &str, name: &str, unique: bool) -> String {
    if unique && cluster.is_none() {
        return slugify(name);
    }
    let qualified = match cluster {
        Some(cluster) => format!("{cluster}-{namespace}-{name}"),
        None => format!("{namespace}-{name}"),
    };
    let whole = uncut(&qualified);
    if whole.len() <= MAX_SLUG {
        return whole;
    }
    let hash = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, qualified.as_bytes())
        .simple()
        .to_string();
    let head: String = whole.chars().take(MAX_SLUG - 9).collect();
    format!("{}-{}", head.trim_end_matches('-'), &hash[..8])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_what_sentry_makes_of_the_go_agents_names() {
        assert_eq!(slugify("report.v2"), "reportv2");
        assert_eq!(slugify("nightly-backup"), "nightly-backup");
        assert_eq!(slugify("Nightly Report_v2"), "nightly-report_v2");
        assert_eq!(slugify("--a--b--"), "a-b");
        assert_eq!(slugify("_x_"), "x");
        assert_eq!(slugify(&"a".repeat(80)).len(), MAX_SLUG);
        assert_eq!(monitor_slug(None, "batch", "report.v2", true), "reportv2");
    }

    #[test]
    fn a_name_in_two_namespaces_or_clusters_gives_two_monitors() {
        let a = monitor_slug(None, "team-a", "backup", false);
        let b = monitor_slug(None, "team-b", "backup", false);
        assert_eq!((a.as_str(), b.as_str()), ("team-a-backup", "team-b-backup"));
        let eu = monitor_slug(Some("eu-1"), "batch", "backup", true);
        let us = monitor_slug(Some("us-1"), "batch", "backup", true);
        assert_eq!(eu, "eu-1-batch-backup");
        assert_ne!(eu, us);
        let long = "x".repeat(60);
        let one = monitor_slug(Some("eu-1"), "ns-one", &long, false);
        let two = monitor_slug(Some("eu-1"), "ns-two", &long, false);
        assert!(
            one.len() <= MAX_SLUG && two.len() <= MAX_SLUG,
            "{one} {two}"
        );
        assert_ne!(one, two, "cut to Sentry's length, still distinct");
        assert_eq!(one, slugify(&one), "a slug Sentry keeps as it is");
    }
}
