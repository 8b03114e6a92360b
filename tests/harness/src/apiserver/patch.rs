//! PATCH bodies: JSON merge patch (also used for strategic merge, as a simplification the
//! agent never notices) and JSON patch (RFC 6902: add, remove, replace, test).

use serde_json::Value;

use super::status::ApiError;

/// RFC 7386: objects merge recursively, `null` removes, anything else replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    let Value::Object(patch_fields) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Default::default());
    }
    let fields = target.as_object_mut().expect("made an object above");
    for (key, value) in patch_fields {
        if value.is_null() {
            fields.remove(key);
        } else {
            merge(fields.entry(key.clone()).or_insert(Value::Null), value);
        }
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn split_pointer(path: &str) -> Result<(String, String), ApiError> {
    let (parent, last) = path
        .rsplit_once('/')
        .ok_or_else(|| ApiError::bad_request(format!("invalid JSON pointer {path:?}")))?;
    Ok((parent.to_string(), unescape(last)))
}

fn container<'a>(doc: &'a mut Value, parent: &str) -> Result<&'a mut Value, ApiError> {
    doc.pointer_mut(parent)
        .ok_or_else(|| ApiError::new(422, "Invalid", format!("doc is missing path: {parent:?}")))
}

/// Applies an RFC 6902 patch. Unsupported operations are a 422, like a failed test.
pub fn json_patch(doc: &mut Value, ops: &Value) -> Result<(), ApiError> {
    let ops = ops
        .as_array()
        .ok_or_else(|| ApiError::bad_request("a JSON patch must be an array of operations"))?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or("");
        let path = op["path"].as_str().unwrap_or("");
        match kind {
            "test" => {
                if doc.pointer(path) != Some(&op["value"]) {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("testing value {path} failed"),
                    ));
                }
            }
            "add" | "replace" => {
                let (parent, last) = split_pointer(path)?;
                let value = op["value"].clone();
                match container(doc, &parent)? {
                    Value::Object(map) => {
                        if kind == "replace" && !map.contains_key(&last) {
                            return Err(ApiError::new(
                                422,
                                "Invalid",
                                format!(
                                    "replace operation does not apply: doc is missing key: {path}"
                                ),
                            ));
                        }
                        map.insert(last, value);
                    }
                    Value::Array(items) => {
                        if last == "-" && kind == "add" {
                            items.push(value);
                        } else {
                            let idx: usize = last.parse().map_err(|_| {
                                ApiError::bad_request(format!("invalid array index in {path:?}"))
                            })?;
                            if kind == "add" && idx <= items.len() {
                                items.insert(idx, value);
                            } else if kind == "replace" && idx < items.len() {
                                items[idx] = value;
                            } else {
                                return Err(ApiError::new(
                                    422,
                                    "Invalid",
                                    format!("index out of range: {path}"),
                                ));
                            }
                        }
                    }
                    _ => {
                        return Err(ApiError::new(
                            422,
                            "Invalid",
                            format!("cannot {kind} at {path}"),
                        ));
                    }
                }
            }
            "remove" => {
                let (parent, last) = split_pointer(path)?;
                let removed = match container(doc, &parent)? {
                    Value::Object(map) => map.remove(&last).is_some(),
                    Value::Array(items) => match last.parse::<usize>() {
                        Ok(idx) if idx < items.len() => {
                            items.remove(idx);
                            true
                        }
                        _ => false,
                    },
                    _ => false,
                };
                if !removed {
                    return Err(ApiError::new(
                        422,
                        "Invalid",
                        format!("remove operation does not apply: doc is missing path: {path}"),
                    ));
                }
            }
            other => {
                return Err(ApiError::new(
                    422,
                    "Invalid",
                    format!("JSON patch operation {other:?} is not supported by this fake"),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1, 2]});
        merge(&mut doc, &json!({"a": {"b": null, "e": 3}, "d": [3]}));
        assert_eq!(doc, json!({"a": {"c": 2, "e": 3}, "d": [3]}));
    }

    #[test]
    fn json_patch_applies_and_tests() {
        let mut doc = json!({"count": 1, "list": [1]});
        json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/count", "value": 1},
                    {"op": "replace", "path": "/count", "value": 2},
                    {"op": "add", "path": "/list/-", "value": 2},
                    {"op": "remove", "path": "/list/0"}]),
        )
        .unwrap();
        assert_eq!(doc, json!({"count": 2, "list": [2]}));
        let err = json_patch(
            &mut doc,
            &json!([{"op": "test", "path": "/count", "value": 9}]),
        );
        assert_eq!(err.unwrap_err().code, 422);
    }
}
