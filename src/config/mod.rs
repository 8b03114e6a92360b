//! Configuration: every environment variable the agent reads, parsed and validated once.
//!
//! [`settings`] declares each variable once (a [`setting`] each) and builds [`Config`];
//! [`vars`] reads them with aliases and errors that name the variable; [`parse`] holds the
//! value grammar; [`types`] the values and the error; [`docs`] renders `--help` and the
//! README's table. The names, defaults and meanings of getsentry/sentry-kubernetes are
//! kept, so swapping the image keeps working. The spellings that lose their underscores
//! when the names are pasted through Markdown (`SENTRYK8SWATCH_NAMESPACES`,
//! `SENTRYK8SCLUSTERCONFIGTYPE`) are accepted as aliases; the canonical name wins when both
//! are set.

pub mod docs;
pub mod parse;
pub mod setting;
pub mod settings;
pub mod types;
pub mod vars;

pub use setting::{GLOBAL_TAG_PREFIX, Origin, Setting};
pub use settings::{Config, SETTINGS};
pub use types::{ClusterConfigType, ConfigError, LogFormat, LogLevel, Namespaces, Notices, Switch};
