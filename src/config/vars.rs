//! The variables as given: aliases resolved, unknown names noted, one variable read and
//! parsed at a time with errors that name it.

use std::collections::BTreeMap;

use super::parse;
use super::setting::{GLOBAL_TAG_PREFIX, Setting};
use super::types::{ConfigError, Notices};
use crate::redact::redact_dsn;

/// The variables as given, aliases resolved to their canonical names.
pub struct Vars {
    values: BTreeMap<String, String>,
}

impl Vars {
    /// Resolves aliases and notes what an operator should hear about.
    pub fn resolve(given: BTreeMap<String, String>, table: &[Setting]) -> (Self, Notices) {
        let mut notices = Notices::new();
        let mut values = given.clone();
        let mut known: Vec<String> = Vec::new();
        for setting in table {
            known.push(setting.name.to_string());
            if let Some(lower) = setting.lowercase()
                && !given.contains_key(setting.name)
                && let Some(value) = given.get(&lower)
            {
                values.insert(setting.name.to_string(), value.clone());
            }
            for alias in setting.aliases() {
                known.push(alias.clone());
                let Some(value) = given.get(&alias) else {
                    continue;
                };
                if given.contains_key(setting.name) {
                    notices.push(format!(
                        "both {} and its alias {alias} are set; using {}",
                        setting.name, setting.name
                    ));
                } else {
                    notices.push(format!(
                        "{alias} is read as {}; prefer the canonical name",
                        setting.name
                    ));
                    values.insert(setting.name.to_string(), value.clone());
                }
            }
        }
        for name in given.keys() {
            let ours = name.starts_with("SENTRY_K8S_") || name.starts_with("SENTRYK8S");
            if ours && !name.starts_with(GLOBAL_TAG_PREFIX) && !known.contains(name) {
                notices.push(format!(
                    "{name} is not a variable this agent reads; ignored"
                ));
            }
        }
        (Self { values }, notices)
    }

    /// One variable, parsed; unset (or blank, unless blank means something) is the default.
    pub fn read<T>(
        &self,
        setting: &Setting,
        parse: fn(&str) -> parse::Parsed<T>,
    ) -> Result<T, ConfigError> {
        let given = self.values.get(setting.name);
        let text = match given {
            Some(value) if setting.blank_is_value || !value.trim().is_empty() => value.as_str(),
            _ => setting.default,
        };
        parse(text).map_err(|reason| {
            let shown = if setting.secret {
                redact_secret(text)
            } else {
                text.to_string()
            };
            ConfigError::new(setting.name, &shown, reason)
        })
    }

    /// `SENTRY_K8S_GLOBAL_TAG_<key>=<value>`, keys checked.
    pub fn global_tags(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut tags = BTreeMap::new();
        for (name, value) in &self.values {
            let Some(key) = name.strip_prefix(GLOBAL_TAG_PREFIX) else {
                continue;
            };
            if key.is_empty() {
                continue;
            }
            if !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | ':' | '-'))
            {
                return Err(ConfigError::new(
                    name,
                    "",
                    "a tag key may only contain letters, digits, '_', '.', ':' and '-'",
                ));
            }
            tags.insert(key.to_string(), value.clone());
        }
        Ok(tags)
    }
}

/// A secret as an error may show it: a DSN without its key, anything else not at all.
fn redact_secret(value: &str) -> String {
    if value.contains('@') {
        redact_dsn(value)
    } else if value.contains("://") {
        value.to_string()
    } else {
        "***".to_string()
    }
}
