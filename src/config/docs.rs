//! `--help` and the README's configuration table, rendered from [`SETTINGS`]: the
//! documentation cannot drift from what the agent reads (a test compares the README).

use std::fmt::Write;

use super::setting::{GLOBAL_TAG_PREFIX, Origin, Setting};
use super::settings::{READ_BY_LIBRARIES, SETTINGS};

fn every_setting() -> impl Iterator<Item = &'static Setting> {
    SETTINGS.iter().chain(READ_BY_LIBRARIES)
}

/// The README's table of variables (Markdown), between its `settings` markers.
pub fn markdown_table() -> String {
    let mut out = String::from("| variable | default | meaning |\n|---|---|---|\n");
    let row = |out: &mut String, name: &str, default: &str, doc: &str| {
        let _ = writeln!(out, "| `{name}` | {default} | {doc} |");
    };
    for setting in SETTINGS.iter().filter(|s| s.origin == Origin::Operator) {
        row(
            &mut out,
            setting.name,
            &setting.default_for_docs(),
            setting.doc(),
        );
    }
    row(
        &mut out,
        &format!("{GLOBAL_TAG_PREFIX}<key>"),
        "—",
        "tag `<key>` with this value on every event",
    );
    for setting in every_setting().filter(|s| s.origin != Origin::Operator) {
        row(
            &mut out,
            setting.name,
            &setting.default_for_docs(),
            setting.doc(),
        );
    }
    out
}

/// `sentry-kubernetes --help`.
pub fn help() -> String {
    let mut out = format!(
        "sentry-kubernetes {}: reports Kubernetes Warning events to Sentry, each occurrence once.\n\n\
         Usage: sentry-kubernetes [--help | --version]\n\n\
         Configured by environment variables only (defaults in brackets):\n\n",
        env!("CARGO_PKG_VERSION")
    );
    let plain = |text: &str| text.replace('`', "");
    let mut entry = |name: &str, default: &str, doc: &str| {
        let _ = writeln!(out, "  {name} [{}]\n      {}", plain(default), plain(doc));
    };
    for setting in SETTINGS.iter().filter(|s| s.origin == Origin::Operator) {
        entry(setting.name, &setting.default_for_docs(), setting.doc());
    }
    entry(
        &format!("{GLOBAL_TAG_PREFIX}<key>"),
        "unset",
        "tag <key> with this value on every event",
    );
    for setting in every_setting().filter(|s| s.origin != Origin::Operator) {
        entry(setting.name, &setting.default_for_docs(), setting.doc());
    }
    out.push_str(
        "\nBooleans take 1/true/yes/on or 0/false/no/off; durations take ms, s, m or h.\n\
         A bad value exits with code 2 naming the variable. README.md says what is reported.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_and_table_name_every_variable_with_its_default() {
        let help = help();
        let table = markdown_table();
        for setting in every_setting() {
            assert!(help.contains(setting.name), "{} in --help", setting.name);
            assert!(
                table.contains(&format!("| `{}` |", setting.name)),
                "{} in the table",
                setting.name
            );
        }
        assert!(help.contains("SENTRY_K8S_QUEUE_SIZE [1000]"), "{help}");
        assert!(
            table.contains("| `SENTRY_K8S_QUEUE_SIZE` | `1000` |"),
            "{table}"
        );
    }
}
