//! `pods/{name}/log`: a container's output as the kubelet serves it. The instance is
//! chosen from the pod's status the way the kubelet chooses it — the previous
//! (`lastState.terminated`) instance with `previous=true`, else the running or terminated
//! one — by container ID, then cut by `tailLines` and `limitBytes`. Tests store the output
//! of each container ID (`/_fake/logs`, [`FakeApiServer::set_container_log`]).
//!
//! [`FakeApiServer::set_container_log`]: super::FakeApiServer::set_container_log

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use hyper::Response;
use serde_json::Value;

use super::State;
use super::api::{Query, Target};
use super::status::ApiError;
use super::store::Key;
use crate::serve::{Body, text_response};

/// Container IDs whose output is kept (the oldest stored is forgotten first).
pub const LOGS_KEPT: usize = 10_000;
/// Output kept per container ID; the start of longer output is dropped, as log rotation would.
pub const LOG_BYTES_KEPT: usize = 1 << 20;

/// The output of container instances, by container ID (`containerd://…`).
#[derive(Default)]
pub struct ContainerLogs {
    by_id: HashMap<String, String>,
    order: VecDeque<String>,
}

impl ContainerLogs {
    /// Stores (replaces) the output of one container instance.
    pub fn set(&mut self, container_id: &str, output: &str) {
        let mut start = output.len().saturating_sub(LOG_BYTES_KEPT);
        while !output.is_char_boundary(start) {
            start += 1;
        }
        if self
            .by_id
            .insert(container_id.to_string(), output[start..].to_string())
            .is_none()
        {
            self.order.push_back(container_id.to_string());
        }
        while self.order.len() > LOGS_KEPT {
            if let Some(oldest) = self.order.pop_front() {
                self.by_id.remove(&oldest);
            }
        }
    }

    pub fn get(&self, container_id: &str) -> Option<&str> {
        self.by_id.get(container_id).map(String::as_str)
    }

    pub fn clear(&mut self) {
        self.by_id.clear();
        self.order.clear();
    }
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str().map(str::to_string))
        .collect()
}

fn bad_request(message: String) -> ApiError {
    ApiError::bad_request(message)
}

/// A non-negative integer parameter, or the apiserver's validation error.
fn non_negative(query: &Query, key: &str, minimum: i64) -> Result<Option<i64>, ApiError> {
    let Some(raw) = query.get(key) else {
        return Ok(None);
    };
    let value: i64 = raw.parse().map_err(|_| {
        bad_request(format!(
            "couldn't parse {key} {raw:?}: strconv.ParseInt: parsing {raw:?}: invalid syntax"
        ))
    })?;
    if value < minimum {
        let rule = if minimum == 0 {
            "must be greater than or equal to 0"
        } else {
            "must be greater than 0"
        };
        return Err(ApiError::new(
            422,
            "Invalid",
            format!("PodLogOptions \"\" is invalid: {key}: Invalid value: {value}: {rule}"),
        ));
    }
    Ok(Some(value))
}

/// The container the request names, checked against the pod like the apiserver does.
fn container_of(pod: &Value, name: &str, query: &Query) -> Result<String, ApiError> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let containers = names(&spec["containers"]);
    let init = names(&spec["initContainers"]);
    let mut known: Vec<String> = containers.clone();
    known.extend(init.iter().cloned());
    known.extend(names(&spec["ephemeralContainers"]));
    // Fixtures often leave the spec out: the statuses name the containers too.
    for list in [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ] {
        known.extend(names(&status[list]));
    }
    match query.get("container").filter(|c| !c.is_empty()) {
        Some(container) if known.contains(container) => Ok(container.clone()),
        Some(container) => Err(bad_request(format!(
            "container {container} is not valid for pod {name}"
        ))),
        None => {
            let regular = if containers.is_empty() {
                names(&status["containerStatuses"])
            } else {
                containers
            };
            match regular.as_slice() {
                [only] => Ok(only.clone()),
                [] => Err(bad_request(format!(
                    "a container name must be specified for pod {name}"
                ))),
                many => {
                    let mut message = format!(
                        "a container name must be specified for pod {name}, choose one of: [{}]",
                        many.join(" ")
                    );
                    if !init.is_empty() {
                        message.push_str(&format!(
                            " or one of the init containers: [{}]",
                            init.join(" ")
                        ));
                    }
                    Err(bad_request(message))
                }
            }
        }
    }
}

/// The container ID whose output is served: the kubelet's `validateContainerLogStatus`.
fn instance_of(
    pod: &Value,
    pod_name: &str,
    container: &str,
    previous: bool,
) -> Result<String, ApiError> {
    let status = [
        "containerStatuses",
        "initContainerStatuses",
        "ephemeralContainerStatuses",
    ]
    .iter()
    .flat_map(|list| pod["status"][*list].as_array().into_iter().flatten())
    .find(|s| s["name"] == container)
    .ok_or_else(|| {
        bad_request(format!(
            "container {container:?} in pod {pod_name:?} is not available"
        ))
    })?;
    let id = |v: &Value| v.as_str().filter(|s| !s.is_empty()).map(str::to_string);
    let last = &status["lastState"]["terminated"];
    let state = &status["state"];
    if previous {
        return id(&last["containerID"]).ok_or_else(|| {
            bad_request(format!(
                "previous terminated container {container:?} in pod {pod_name:?} not found"
            ))
        });
    }
    let terminated_here = || {
        bad_request(format!(
            "container {container:?} in pod {pod_name:?} is terminated"
        ))
    };
    if state["running"].is_object() {
        return id(&status["containerID"]).ok_or_else(terminated_here);
    }
    if state["terminated"].is_object() {
        return id(&state["terminated"]["containerID"])
            .or_else(|| id(&last["containerID"]))
            .ok_or_else(terminated_here);
    }
    if last.is_object() {
        return id(&last["containerID"]).ok_or_else(terminated_here);
    }
    let reason = state["waiting"]["reason"].as_str().unwrap_or("");
    Err(bad_request(match reason {
        "ErrImagePull" => format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: image can't be pulled"
        ),
        "ImagePullBackOff" => format!(
            "container {container:?} in pod {pod_name:?} is waiting to start: trying and failing to pull image"
        ),
        "" => {
            format!("container {container:?} in pod {pod_name:?} is waiting to start - no logs yet")
        }
        reason => {
            format!("container {container:?} in pod {pod_name:?} is waiting to start: {reason}")
        }
    }))
}

/// The last `tail` lines, then at most `limit` bytes of them.
pub fn cut(output: &str, tail: Option<i64>, limit: Option<i64>) -> &str {
    let mut text = output;
    if let Some(tail) = tail {
        let tail = tail as usize;
        let body = text.strip_suffix('\n').unwrap_or(text);
        let start = if tail == 0 {
            text.len()
        } else {
            body.rmatch_indices('\n')
                .nth(tail - 1)
                .map_or(0, |(at, _)| at + 1)
        };
        text = &text[start..];
    }
    if let Some(limit) = limit {
        let mut end = (limit as usize).min(text.len());
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = &text[..end];
    }
    text
}

/// Serves `GET .../pods/{name}/log`.
pub fn serve(
    state: &Arc<State>,
    target: &Target,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let name = target.name.clone().unwrap_or_default();
    let tail = non_negative(query, "tailLines", 0)?;
    let limit = non_negative(query, "limitBytes", 1)?;
    let previous = matches!(
        query.get("previous").map(String::as_str),
        Some("true" | "1")
    );
    let key = Key {
        storage: target.res.storage,
        namespace: target.namespace.clone().unwrap_or_default(),
        name: name.clone(),
    };
    let pod = state
        .store
        .lock()
        .unwrap()
        .get(&key)
        .ok_or_else(|| ApiError::not_found(target.res, &name))?;
    let container = container_of(&pod, &name, query)?;
    let id = instance_of(&pod, &name, &container, previous)?;
    let logs = state.logs.lock().unwrap();
    let output = logs.get(&id).unwrap_or("");
    Ok(text_response(200, cut(output, tail, limit)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tail_lines_then_limit_bytes() {
        let log = "one\ntwo\nthree\n";
        assert_eq!(cut(log, Some(2), None), "two\nthree\n");
        assert_eq!(cut(log, Some(9), None), log);
        assert_eq!(cut(log, Some(0), None), "");
        assert_eq!(cut("a\nb", Some(1), None), "b");
        assert_eq!(cut(log, Some(2), Some(5)), "two\nt");
        assert_eq!(cut("é", None, Some(1)), "");
    }

    #[test]
    fn the_instance_follows_the_kubelets_choice() {
        let pod = json!({"status": {"containerStatuses": [{
            "name": "app", "containerID": "containerd://new",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 1, "containerID": "containerd://old"}},
        }]}});
        assert_eq!(
            instance_of(&pod, "p", "app", true).unwrap(),
            "containerd://old"
        );
        // Waiting after a crash: the kubelet serves the dead instance.
        assert_eq!(
            instance_of(&pod, "p", "app", false).unwrap(),
            "containerd://old"
        );
        let fresh = json!({"status": {"containerStatuses": [{
            "name": "app", "state": {"waiting": {"reason": "ContainerCreating"}}, "lastState": {},
        }]}});
        let err = instance_of(&fresh, "p", "app", true).unwrap_err();
        assert_eq!(err.code, 400);
        assert_eq!(
            err.message,
            "previous terminated container \"app\" in pod \"p\" not found"
        );
        assert!(
            instance_of(&fresh, "p", "app", false)
                .unwrap_err()
                .message
                .contains("waiting to start: ContainerCreating")
        );
    }

    #[test]
    fn stored_output_is_bounded() {
        let mut logs = ContainerLogs::default();
        logs.set("a", &"x".repeat(LOG_BYTES_KEPT + 10));
        assert_eq!(logs.get("a").unwrap().len(), LOG_BYTES_KEPT);
        for i in 0..=LOGS_KEPT {
            logs.set(&format!("id-{i}"), "y");
        }
        assert_eq!(logs.by_id.len(), LOGS_KEPT);
        assert!(logs.get("a").is_none(), "the oldest is forgotten");
    }
}
