//! `fieldSelector` and `labelSelector` parsing and matching, with the real server's rules.

use serde_json::Value;

use super::resources::ResourceDef;
use super::status::ApiError;

#[derive(Clone, Debug, PartialEq)]
enum FieldOp {
    Eq,
    NotEq,
}

#[derive(Clone, Debug, PartialEq)]
struct FieldTerm {
    field: String,
    op: FieldOp,
    value: String,
}

/// A parsed `fieldSelector`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldSelector {
    terms: Vec<FieldTerm>,
}

/// Splits on `sep` where it is not escaped with a backslash; unescapes the parts.
fn split_unescaped(input: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut chars = input.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                current.push(next);
            }
        } else if c == sep {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    parts.push(current);
    parts
}

impl FieldSelector {
    /// Parses a selector and checks every field label is one this resource supports.
    pub fn parse(input: &str, res: &ResourceDef) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for raw in split_unescaped(input, ',') {
            let raw = raw.trim();
            if raw.is_empty() {
                continue;
            }
            let (field, op, value) = if let Some((f, v)) = raw.split_once("!=") {
                (f, FieldOp::NotEq, v)
            } else if let Some((f, v)) = raw.split_once("==") {
                (f, FieldOp::Eq, v)
            } else if let Some((f, v)) = raw.split_once('=') {
                (f, FieldOp::Eq, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: invalid selector: '{raw}'; can't understand '{raw}'"
                )));
            };
            let field = field.trim();
            let supported = field == "metadata.name"
                || (field == "metadata.namespace" && res.namespaced)
                || res.field_labels().contains(&field);
            if !supported {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field}"
                )));
            }
            terms.push(FieldTerm {
                field: field.to_string(),
                op,
                value: value.trim().to_string(),
            });
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Whether the object (in the view the client asked for) matches.
    pub fn matches(&self, object: &Value) -> bool {
        self.terms.iter().all(|t| {
            let actual = field_value(object, &t.field);
            match t.op {
                FieldOp::Eq => actual == t.value,
                FieldOp::NotEq => actual != t.value,
            }
        })
    }
}

/// The string a field label selects on; absent fields compare as "".
fn field_value(object: &Value, field: &str) -> String {
    // core/v1 events register `source` as `source.component`.
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let mut node = object;
    for part in path.split('.') {
        match node.get(part) {
            Some(v) => node = v,
            None => return String::new(),
        }
    }
    match node {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

#[derive(Clone, Debug, PartialEq)]
enum LabelOp {
    Exists,
    NotExists,
    In(Vec<String>),
    NotIn(Vec<String>),
}

#[derive(Clone, Debug, PartialEq)]
struct LabelTerm {
    key: String,
    op: LabelOp,
}

/// A parsed `labelSelector`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LabelSelector {
    terms: Vec<LabelTerm>,
}

fn label_error(raw: &str, why: &str) -> ApiError {
    ApiError::bad_request(format!("unable to parse requirement: {why} (in {raw:?})"))
}

fn valid_label_key(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// Splits on commas outside parentheses.
fn split_terms(input: &str) -> Vec<&str> {
    let mut terms = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                terms.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    terms.push(&input[start..]);
    terms
}

fn parse_set(raw: &str, rest: &str) -> Result<Vec<String>, ApiError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| label_error(raw, "expected a parenthesised set of values"))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(input: &str) -> Result<Self, ApiError> {
        let mut terms = Vec::new();
        for raw in split_terms(input) {
            let t = raw.trim();
            if t.is_empty() {
                continue;
            }
            let term = if let Some(key) = t.strip_prefix('!') {
                LabelTerm {
                    key: key.trim().to_string(),
                    op: LabelOp::NotExists,
                }
            } else if let Some((k, v)) = t.split_once("!=") {
                LabelTerm {
                    key: k.trim().to_string(),
                    op: LabelOp::NotIn(vec![v.trim().to_string()]),
                }
            } else if let Some((k, v)) = t.split_once("==").or_else(|| t.split_once('=')) {
                LabelTerm {
                    key: k.trim().to_string(),
                    op: LabelOp::In(vec![v.trim().to_string()]),
                }
            } else if let Some(idx) = t.find(" notin ") {
                LabelTerm {
                    key: t[..idx].trim().to_string(),
                    op: LabelOp::NotIn(parse_set(t, &t[idx + 7..])?),
                }
            } else if let Some(idx) = t.find(" in ") {
                LabelTerm {
                    key: t[..idx].trim().to_string(),
                    op: LabelOp::In(parse_set(t, &t[idx + 4..])?),
                }
            } else if t.contains(['<', '>', '(', ')', ' ']) {
                return Err(label_error(t, "unsupported operator"));
            } else {
                LabelTerm {
                    key: t.to_string(),
                    op: LabelOp::Exists,
                }
            };
            if !valid_label_key(&term.key) {
                return Err(label_error(t, "invalid label key"));
            }
            terms.push(term);
        }
        Ok(Self { terms })
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn matches(&self, object: &Value) -> bool {
        let labels = object.pointer("/metadata/labels");
        self.terms.iter().all(|t| {
            let value = labels.and_then(|l| l.get(&t.key)).and_then(Value::as_str);
            match (&t.op, value) {
                (LabelOp::Exists, v) => v.is_some(),
                (LabelOp::NotExists, v) => v.is_none(),
                (LabelOp::In(set), Some(v)) => set.iter().any(|s| s == v),
                (LabelOp::In(_), None) => false,
                (LabelOp::NotIn(set), Some(v)) => !set.iter().any(|s| s == v),
                (LabelOp::NotIn(_), None) => true,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::resources::find;
    use serde_json::json;

    #[test]
    fn field_selectors_follow_registered_labels() {
        let events = find("", "v1", "events").unwrap();
        let ev = json!({"metadata": {"name": "a", "namespace": "n"},
            "involvedObject": {"kind": "Pod", "name": "web"}, "type": "Warning",
            "source": {"component": "kubelet"}});
        let sel = FieldSelector::parse("involvedObject.kind=Pod,type!=Normal", events).unwrap();
        assert!(sel.matches(&ev));
        assert!(
            FieldSelector::parse("source=kubelet", events)
                .unwrap()
                .matches(&ev)
        );
        assert!(
            !FieldSelector::parse("involvedObject.name==db", events)
                .unwrap()
                .matches(&ev)
        );
        let err = FieldSelector::parse("spec.nodeName=x", events).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(err.message, "field label not supported: spec.nodeName");
    }

    #[test]
    fn label_selectors_support_set_based_terms() {
        let obj = json!({"metadata": {"labels": {"app": "web", "tier": "front"}}});
        for (sel, expected) in [
            ("app=web", true),
            ("app==web,tier", true),
            ("app!=web", false),
            ("app in (db, web)", true),
            ("tier notin (front)", false),
            ("!missing", true),
            ("missing", false),
            ("app in (db),tier", false),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&obj),
                expected,
                "{sel}"
            );
        }
        assert_eq!(LabelSelector::parse("app in db").unwrap_err().code, 400);
    }
}
