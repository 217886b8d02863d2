//! Watching one named object until a condition holds, as client-go's
//! `watchtools.UntilWithSync` does for `rollout status` and `wait`: list
//! it by `metadata.name` (the first state), then watch from that list's
//! resourceVersion, re-watching when the server ends a watch and re-listing
//! when the version is too old (410 Gone). Nothing polls.

use futures::{StreamExt, TryStreamExt};
use kube::api::{ListParams, WatchEvent, WatchParams};
use serde_json::Value;

use crate::ctx::Ctx;
use crate::discovery::Resource;
use crate::error::Result;

/// What the watch saw of the object.
#[derive(Debug, Clone, Copy)]
pub enum Seen<'a> {
    /// The object as it now is (listed, added or modified).
    Present(&'a Value),
    /// The object was deleted (its last state).
    Deleted(&'a Value),
    /// The first list found no such object.
    Absent,
}

/// Call `done` with each state of `name` until it returns true; returns
/// the object of that state (Null when absent). Errors from `done` end the
/// watch and are returned.
pub async fn until<F>(
    ctx: &Ctx,
    r: &Resource,
    ns: Option<&str>,
    name: &str,
    mut done: F,
) -> Result<Value>
where
    F: FnMut(Seen<'_>) -> Result<bool>,
{
    let field = format!("metadata.name={name}");
    'relist: loop {
        let list = ctx
            .send(
                ctx.request(r, ns)
                    .list(&ListParams::default().fields(&field))?,
            )
            .await?;
        let mut rv = list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match list["items"].as_array().and_then(|i| i.first()) {
            Some(obj) => {
                if done(Seen::Present(obj))? {
                    return Ok(obj.clone());
                }
            }
            None => {
                if done(Seen::Absent)? {
                    return Ok(Value::Null);
                }
            }
        }
        loop {
            let wp = WatchParams::default().fields(&field).timeout(290);
            let req = ctx.request(r, ns).watch(&wp, &rv)?;
            let mut stream = ctx.client.request_events::<Value>(req).await?.boxed();
            while let Some(event) = stream.try_next().await? {
                let (obj, seen_deleted) = match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) => (o, false),
                    WatchEvent::Deleted(o) => (o, true),
                    WatchEvent::Bookmark(b) => {
                        rv = b.metadata.resource_version;
                        continue;
                    }
                    WatchEvent::Error(e) if e.code == 410 => continue 'relist,
                    WatchEvent::Error(e) => return Err(crate::error::from_status(&e)),
                };
                if let Some(v) = obj["metadata"]["resourceVersion"].as_str() {
                    rv = v.to_string();
                }
                let seen = if seen_deleted {
                    Seen::Deleted(&obj)
                } else {
                    Seen::Present(&obj)
                };
                if done(seen)? {
                    return Ok(obj);
                }
            }
            // The server closed the watch (its timeout): carry on from the
            // last version seen.
        }
    }
}

/// A `LabelSelector` object as the query string the API takes
/// (`app=web,tier in (a,b),!legacy`).
pub fn selector_string(sel: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(m) = sel["matchLabels"].as_object() {
        for (k, v) in m {
            parts.push(format!("{k}={}", v.as_str().unwrap_or("")));
        }
    }
    for e in sel["matchExpressions"]
        .as_array()
        .map(|a| a.as_slice())
        .unwrap_or(&[])
    {
        let key = e["key"].as_str().unwrap_or("");
        let values: Vec<&str> = e["values"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        match e["operator"].as_str().unwrap_or("") {
            "In" => parts.push(format!("{key} in ({})", values.join(","))),
            "NotIn" => parts.push(format!("{key} notin ({})", values.join(","))),
            "Exists" => parts.push(key.to_string()),
            "DoesNotExist" => parts.push(format!("!{key}")),
            _ => {}
        }
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn selectors_render_as_queries() {
        let cases = [
            (json!({"matchLabels": {"app": "web"}}), "app=web"),
            (
                json!({"matchLabels": {"a": "1", "b": "2"}, "matchExpressions": [
                    {"key": "t", "operator": "In", "values": ["x", "y"]},
                    {"key": "u", "operator": "NotIn", "values": ["z"]},
                    {"key": "e", "operator": "Exists"},
                    {"key": "d", "operator": "DoesNotExist"}]}),
                "a=1,b=2,t in (x,y),u notin (z),e,!d",
            ),
            (json!({}), ""),
        ];
        for (sel, want) in cases {
            assert_eq!(selector_string(&sel), want);
        }
    }
}
