//! One environment variable as the agent declares it: name, default, doc, and how its
//! value is treated. The table of them is [`settings`](super::settings).

/// Who sets a variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The operator: `SENTRY_*` variables (Markdown-mangled aliases accepted).
    Operator,
    /// Kubernetes or the system (`KUBERNETES_SERVICE_HOST`, `HOME`, …).
    Platform,
    /// Read by a library the agent uses, not by the agent itself (documented only).
    Library,
}

/// One environment variable.
#[derive(Clone, Copy, Debug)]
pub struct Setting {
    pub name: &'static str,
    /// The text the parser reads when the variable is unset (or blank, see `blank_is_value`).
    pub default: &'static str,
    /// How `--help` and the README show the default, when the text alone would mislead.
    pub shown_default: Option<&'static str>,
    pub doc: &'static str,
    /// Never shown in logs or errors (a DSN's key).
    pub secret: bool,
    /// A blank value means something (`SENTRY_K8S_HTTP_ADDR=` disables the server)
    /// instead of the default.
    pub blank_is_value: bool,
    /// The lower-case spelling is read too, silently (`https_proxy`, as curl reads it).
    pub lowercase_alias: bool,
    pub origin: Origin,
}

impl Setting {
    pub const fn new(name: &'static str, default: &'static str, doc: &'static str) -> Self {
        Self {
            name,
            default,
            shown_default: None,
            doc,
            secret: false,
            blank_is_value: false,
            lowercase_alias: false,
            origin: Origin::Operator,
        }
    }

    #[must_use]
    pub const fn lowercase_alias(mut self) -> Self {
        self.lowercase_alias = true;
        self
    }

    #[must_use]
    pub const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }

    #[must_use]
    pub const fn blank_is_value(mut self) -> Self {
        self.blank_is_value = true;
        self
    }

    #[must_use]
    pub const fn shown(mut self, default: &'static str) -> Self {
        self.shown_default = Some(default);
        self
    }

    #[must_use]
    pub const fn platform(mut self) -> Self {
        self.origin = Origin::Platform;
        self
    }

    #[must_use]
    pub const fn library(mut self) -> Self {
        self.origin = Origin::Library;
        self
    }

    /// The one-line doc without the leading space a `///` comment leaves.
    pub fn doc(&self) -> &'static str {
        self.doc.trim()
    }

    /// The default as documentation shows it.
    pub fn default_for_docs(&self) -> String {
        match (self.shown_default, self.default) {
            (Some(shown), _) => shown.to_string(),
            (None, "") => "empty".to_string(),
            (None, value @ ("off" | "on")) => value.to_string(),
            (None, value) => format!("`{value}`"),
        }
    }

    /// The spellings this variable takes when Markdown eats its underscores: the first pair
    /// (`SENTRYK8SWATCH_NAMESPACES`) or all of them (`SENTRYK8SCLUSTERCONFIGTYPE`). Only the
    /// agent's own `SENTRY_K8S_*` variables have them.
    pub fn aliases(&self) -> Vec<String> {
        if !self.name.starts_with("SENTRY_K8S_") {
            return Vec::new();
        }
        vec![self.name.replacen('_', "", 2), self.name.replace('_', "")]
    }

    /// The silent lower-case spelling, if this variable has one.
    pub fn lowercase(&self) -> Option<String> {
        self.lowercase_alias.then(|| self.name.to_ascii_lowercase())
    }
}

/// `SENTRY_K8S_GLOBAL_TAG_<key>=<value>`: tag `<key>` on every event.
pub const GLOBAL_TAG_PREFIX: &str = "SENTRY_K8S_GLOBAL_TAG_";
