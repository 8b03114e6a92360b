//! `meta/v1 Status` failures with the codes, reasons and messages the real apiserver uses.

use serde_json::{Value, json};

use super::resources::ResourceDef;

/// A failed API call, rendered as a `Status` body.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, name: &str, res: &ResourceDef) -> Self {
        let mut details = json!({ "kind": res.plural });
        if !name.is_empty() {
            details["name"] = json!(name);
        }
        if !res.group.is_empty() {
            details["group"] = json!(res.group);
        }
        self.details = Some(details);
        self
    }

    pub fn not_found(res: &ResourceDef, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", res.qualified_plural()),
        )
        .with_details(name, res)
    }

    pub fn namespace_not_found(namespace: &str) -> Self {
        let ns = super::resources::native("namespaces");
        Self::new(
            404,
            "NotFound",
            format!("namespaces \"{namespace}\" not found"),
        )
        .with_details(namespace, ns)
    }

    pub fn already_exists(res: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", res.qualified_plural()),
        )
        .with_details(name, res)
    }

    pub fn conflict(res: &ResourceDef, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                res.qualified_plural()
            ),
        )
        .with_details(name, res)
    }

    /// 422 with one `field: Reason: detail` cause, as field validation reports it.
    pub fn invalid(res: &ResourceDef, name: &str, field: &str, detail: &str) -> Self {
        let kind = if res.group.is_empty() {
            res.kind.to_string()
        } else {
            format!("{}.{}", res.kind, res.group)
        };
        let mut err = Self::new(
            422,
            "Invalid",
            format!("{kind} \"{name}\" is invalid: {field}: {detail}"),
        );
        let mut details = json!({
            "name": name,
            "kind": res.kind,
            "causes": [{ "reason": "FieldValueInvalid", "message": detail, "field": field }],
        });
        if !res.group.is_empty() {
            details["group"] = json!(res.group);
        }
        err.details = Some(details);
        err
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    pub fn unauthorized() -> Self {
        Self::new(401, "Unauthorized", "Unauthorized")
    }

    /// The RBAC denial text of the real authorizer; `resource` is what RBAC names
    /// (`pods`, or `pods/log` for a subresource).
    pub fn forbidden(
        user: &str,
        verb: &str,
        res: &ResourceDef,
        resource: &str,
        namespace: Option<&str>,
        name: &str,
    ) -> Self {
        let scope = match namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_string(),
        };
        let subject = if name.is_empty() {
            res.qualified_plural()
        } else {
            format!("{} \"{name}\"", res.qualified_plural())
        };
        Self::new(
            403,
            "Forbidden",
            format!(
                "{subject} is forbidden: User \"{user}\" cannot {verb} resource \"{resource}\" in API group \"{}\" {scope}",
                res.group
            ),
        )
        .with_details(name, res)
    }

    pub fn method_not_allowed() -> Self {
        Self::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {content_type:?}; this fake does not implement it)"
            ),
        )
    }

    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// A generic failure for an HTTP status chosen by a test (`/_fake/fail`).
    pub fn injected(code: u16, message: Option<String>) -> Self {
        let reason = match code {
            400 => "BadRequest",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "NotFound",
            409 => "Conflict",
            410 => "Expired",
            422 => "Invalid",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "",
        };
        let message = message.unwrap_or_else(|| format!("injected failure with status {code}"));
        Self::new(code, reason, message)
    }

    /// The `Status` object of this failure.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;

    #[test]
    fn forbidden_reads_like_the_real_authorizer() {
        let events = find("", "v1", "events").unwrap();
        let err = ApiError::forbidden(
            "system:serviceaccount:x:y",
            "watch",
            events,
            "events",
            None,
            "",
        );
        assert_eq!(
            err.message,
            "events is forbidden: User \"system:serviceaccount:x:y\" cannot watch resource \"events\" in API group \"\" at the cluster scope"
        );
        let rs = find("apps", "v1", "replicasets").unwrap();
        let err = ApiError::forbidden("u", "get", rs, "replicasets", Some("prod"), "web-1");
        assert_eq!(
            err.message,
            "replicasets.apps \"web-1\" is forbidden: User \"u\" cannot get resource \"replicasets\" in API group \"apps\" in the namespace \"prod\""
        );
        assert_eq!(err.to_status()["details"]["group"], "apps");
        let pods = find("", "v1", "pods").unwrap();
        let err = ApiError::forbidden("u", "get", pods, "pods/log", Some("shop"), "web-1");
        assert_eq!(
            err.message,
            "pods \"web-1\" is forbidden: User \"u\" cannot get resource \"pods/log\" in API group \"\" in the namespace \"shop\""
        );
    }
}
