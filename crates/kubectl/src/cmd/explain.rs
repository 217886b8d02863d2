//! `tug explain`: documentation of a resource or one of its fields, read
//! from the server's OpenAPI v3 document for the resource's group-version
//! and laid out like kubectl's plaintext explain (descriptions word-wrapped
//! to 76 columns and indented by four).

use serde_json::{Map, Value};

use crate::ctx::Ctx;
use crate::error::{CliError, Result};

/// Describe fields and structure of various resources.
///
/// Fields are identified via a simple JSONPath identifier:
/// <type>.<fieldName>[.<fieldName>]
///
/// Examples:
///   # Get the documentation of the resource and its fields
///   tug explain pods
///
///   # Get the documentation of a specific field of a resource
///   tug explain pods.spec.containers
#[derive(Debug, Clone, clap::Args)]
#[command(verbatim_doc_comment)]
pub struct ExplainArgs {
    /// TYPE[.FIELD[.FIELD...]]
    pub path: String,
}

/// mitchellh/go-wordwrap's algorithm, which kubectl's templates use: words
/// move to the next line when they would pass `lim`; existing newlines
/// stay; words longer than the limit are not broken.
pub fn wrap(s: &str, lim: usize) -> String {
    let mut out = String::new();
    let (mut current, mut word, mut space) = (0usize, String::new(), String::new());
    for c in s.chars() {
        if c == '\n' {
            if word.is_empty() {
                if current + space.chars().count() <= lim {
                    out.push_str(&space);
                }
            } else {
                out.push_str(&space);
                out.push_str(&word);
                word.clear();
            }
            space.clear();
            out.push('\n');
            current = 0;
        } else if c.is_whitespace() && c != '\u{a0}' {
            if space.is_empty() || !word.is_empty() {
                current += space.chars().count() + word.chars().count();
                out.push_str(&space);
                out.push_str(&word);
                space.clear();
                word.clear();
            }
            space.push(c);
        } else {
            word.push(c);
            let wl = word.chars().count();
            if current + space.chars().count() + wl > lim && wl < lim {
                out.push('\n');
                current = 0;
                space.clear();
            }
        }
    }
    if word.is_empty() {
        if current + space.chars().count() <= lim {
            out.push_str(&space);
        }
    } else {
        out.push_str(&space);
        out.push_str(&word);
    }
    out
}

fn indent4(text: &str) -> String {
    text.split('\n').map(|l| format!("    {l}\n")).collect()
}

/// Follow `$ref` (directly or through `allOf`) to a named schema.
fn ref_name(schema: &Value) -> Option<&str> {
    schema["$ref"]
        .as_str()
        .or_else(|| schema["allOf"][0]["$ref"].as_str())
        .and_then(|r| r.strip_prefix("#/components/schemas/"))
}

fn resolve<'a>(schemas: &'a Map<String, Value>, schema: &'a Value) -> &'a Value {
    ref_name(schema)
        .and_then(|n| schemas.get(n))
        .unwrap_or(schema)
}

/// kubectl's type label: `string`, `[]Container`, `map[string]string`,
/// `ObjectMeta`, `Object`.
pub fn type_name(schema: &Value) -> String {
    if let Some(r) = ref_name(schema) {
        return r.rsplit('.').next().unwrap_or(r).to_string();
    }
    if schema["x-kubernetes-int-or-string"].as_bool() == Some(true) {
        return "IntOrString".into();
    }
    match schema["type"].as_str() {
        Some("array") => format!("[]{}", type_name(&schema["items"])),
        Some("object") if schema["additionalProperties"].is_object() => {
            format!("map[string]{}", type_name(&schema["additionalProperties"]))
        }
        Some("object") | None => "Object".into(),
        Some(t) => t.to_string(),
    }
}

/// Render the explanation of `fields` under the kind's schema.
pub fn render(
    schemas: &Map<String, Value>,
    root: &str,
    group: &str,
    kind: &str,
    version: &str,
    fields: &[&str],
) -> Result<String> {
    let mut schema = schemas
        .get(root)
        .ok_or_else(|| CliError::client(format!("couldn't find resource for \"{kind}\"")))?;
    let mut field_line = None;
    let mut description = schema["description"].as_str().unwrap_or("").to_string();
    for (i, f) in fields.iter().enumerate() {
        // Lists and maps explain their element type.
        let mut container = resolve(schemas, schema);
        while let Some(inner) = match container["type"].as_str() {
            Some("array") => Some(&container["items"]),
            Some("object") if container["additionalProperties"].is_object() => {
                Some(&container["additionalProperties"])
            }
            _ => None,
        } {
            container = resolve(schemas, inner);
        }
        let field = container["properties"]
            .get(*f)
            .ok_or_else(|| CliError::client(format!("field \"{f}\" does not exist")))?;
        if i + 1 == fields.len() {
            field_line = Some(format!("FIELD: {f} <{}>\n\n", type_name(field)));
            let own = field["description"].as_str().unwrap_or("");
            let element = if field["type"] == "array" {
                &field["items"]
            } else {
                field
            };
            let target = resolve(schemas, element);
            let of_type = if std::ptr::eq(target, element) {
                ""
            } else {
                target["description"].as_str().unwrap_or("")
            };
            description = [own, of_type]
                .iter()
                .filter(|d| !d.is_empty())
                .copied()
                .collect::<Vec<_>>()
                .join("\n");
        }
        schema = field;
    }
    let mut out = String::new();
    if !group.is_empty() {
        out += &format!("GROUP:      {group}\n");
    }
    out += &format!("KIND:       {kind}\nVERSION:    {version}\n\n");
    if let Some(f) = field_line {
        out += &f;
        out += "\n";
    }
    out += "DESCRIPTION:\n";
    out += &indent4(&wrap(&description, 76));
    out += "    \n";
    let mut target = resolve(schemas, schema);
    while let Some(inner) = match target["type"].as_str() {
        Some("array") => Some(&target["items"]),
        _ => None,
    } {
        target = resolve(schemas, inner);
    }
    if let Some(props) = target["properties"].as_object().filter(|p| !p.is_empty()) {
        let required: Vec<&str> = target["required"]
            .as_array()
            .map(|a| a.iter().filter_map(|x| x.as_str()).collect())
            .unwrap_or_default();
        out += "FIELDS:\n";
        let mut names: Vec<&String> = props.keys().collect();
        names.sort();
        for n in names {
            let p = &props[n.as_str()];
            let req = if required.contains(&n.as_str()) {
                " -required-"
            } else {
                ""
            };
            out += &format!("  {n}\t<{}>{req}\n", type_name(p));
            out += &indent4(&wrap(p["description"].as_str().unwrap_or(""), 76));
            out += "\n";
        }
    }
    out += "\n";
    Ok(out)
}

pub async fn run(ctx: &Ctx, a: ExplainArgs) -> Result<()> {
    let mut parts = a.path.split('.');
    let word = parts.next().unwrap_or("");
    let fields: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
    let r = ctx
        .resolve(word)
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| CliError::client("no resource"))?;
    let index = ctx
        .send(
            http::Request::get("/openapi/v3")
                .body(Vec::new())
                .map_err(CliError::client)?,
        )
        .await?;
    let key = if r.group.is_empty() {
        format!("api/{}", r.version)
    } else {
        format!("apis/{}/{}", r.group, r.version)
    };
    let url = index["paths"][&key]["serverRelativeURL"]
        .as_str()
        .ok_or_else(|| {
            CliError::client(format!("the server has no OpenAPI v3 document for {key}"))
        })?;
    let doc = ctx
        .send(
            http::Request::get(url)
                .body(Vec::new())
                .map_err(CliError::client)?,
        )
        .await?;
    let schemas = doc["components"]["schemas"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let root = schemas
        .iter()
        .find(|(_, s)| {
            s["x-kubernetes-group-version-kind"]
                .as_array()
                .is_some_and(|gvks| {
                    gvks.iter().any(|g| {
                        g["group"] == r.group.as_str()
                            && g["version"] == r.version.as_str()
                            && g["kind"] == r.kind.as_str()
                    })
                })
        })
        .map(|(k, _)| k.clone())
        .ok_or_else(|| {
            CliError::client(format!(
                "couldn't find resource for \"{}\"",
                r.api_resource().api_version
            ))
        })?;
    crate::out(&render(
        &schemas, &root, &r.group, &r.kind, &r.version, &fields,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wrapping_follows_go_wordwrap() {
        assert_eq!(wrap("aaa bbb ccc", 7), "aaa bbb\nccc");
        assert_eq!(wrap("one\ntwo three", 5), "one\ntwo\nthree");
        assert_eq!(wrap("short", 76), "short");
        assert_eq!(
            wrap("x https://a.very/long/url/that/does/not/fit", 10),
            "x\nhttps://a.very/long/url/that/does/not/fit"
        );
    }

    #[test]
    fn fields_and_types_render_like_kubectl() {
        let schemas: Map<String, Value> = serde_json::from_value(json!({
            "k.CM": {"description": "A config map.", "required": ["metadata"], "x-kubernetes-group-version-kind": [{"group": "", "version": "v1", "kind": "ConfigMap"}],
                     "properties": {"data": {"type": "object", "additionalProperties": {"type": "string"}, "description": "Data."},
                                    "metadata": {"allOf": [{"$ref": "#/components/schemas/k.ObjectMeta"}], "description": "Meta."},
                                    "items": {"type": "array", "items": {"$ref": "#/components/schemas/k.Item"}, "description": "Items."}}},
            "k.ObjectMeta": {"description": "ObjectMeta is metadata.", "properties": {"name": {"type": "string", "description": "Name."}}},
            "k.Item": {"description": "An item.", "properties": {"port": {"type": "integer", "description": "Port."}}}
        })).unwrap();
        let top = render(&schemas, "k.CM", "", "ConfigMap", "v1", &[]).unwrap();
        assert_eq!(top, "KIND:       ConfigMap\nVERSION:    v1\n\nDESCRIPTION:\n    A config map.\n    \nFIELDS:\n  data\t<map[string]string>\n    Data.\n\n  items\t<[]Item>\n    Items.\n\n  metadata\t<ObjectMeta> -required-\n    Meta.\n\n\n");
        let leaf = render(
            &schemas,
            "k.CM",
            "",
            "ConfigMap",
            "v1",
            &["metadata", "name"],
        )
        .unwrap();
        assert!(
            leaf.contains("FIELD: name <string>\n\n\nDESCRIPTION:\n    Name.\n    \n\n"),
            "{leaf}"
        );
        let list = render(&schemas, "k.CM", "g", "ConfigMap", "v1", &["items"]).unwrap();
        assert!(list.starts_with("GROUP:      g\n"), "{list}");
        assert!(
            list.contains(
                "DESCRIPTION:\n    Items.\n    An item.\n    \nFIELDS:\n  port\t<integer>\n"
            ),
            "{list}"
        );
        assert!(render(&schemas, "k.CM", "", "ConfigMap", "v1", &["nope"]).is_err());
    }
}
