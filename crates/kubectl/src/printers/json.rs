//! JSON output the way kubectl writes it: Go's encoders sort map
//! keys, `-o json` indents by four spaces and escapes `<`, `>` and `&`.

use serde_json::Value;

/// A copy of `v` with every object's keys in sorted order (Go marshals maps
/// sorted; our JSON keeps insertion order).
pub fn sorted(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted(&m[k])))
                    .collect(),
            )
        }
        Value::Array(a) => Value::Array(a.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// Go's HTML-safe escaping: `<`, `>` and `&` can only occur inside JSON
/// strings, so a plain replacement is exact.
fn html_escape(s: String) -> String {
    if !s.contains(['<', '>', '&']) {
        return s;
    }
    s.replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026")
}

/// `-o json`: sorted keys, four-space indent, trailing newline.
pub fn go_pretty(v: &Value) -> String {
    use serde::Serialize;
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    // Serializing a Value into memory cannot fail.
    let _ = sorted(v).serialize(&mut ser);
    let mut s = html_escape(String::from_utf8_lossy(&buf).into_owned());
    s.push('\n');
    s
}

/// Compact JSON like Go's `json.Marshal` (jsonpath and custom columns).
pub fn go_compact(v: &Value) -> String {
    html_escape(sorted(v).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_output_matches_go() {
        let cases = [
            (json!({"b": 1, "a": {"d": [], "c": "<none>"}}),
             "{\n    \"a\": {\n        \"c\": \"\\u003cnone\\u003e\",\n        \"d\": []\n    },\n    \"b\": 1\n}\n"),
            (json!({}), "{}\n"),
        ];
        for (v, want) in cases {
            assert_eq!(go_pretty(&v), want);
        }
        assert_eq!(
            go_compact(&json!({"z": 1, "a": "x&y"})),
            r#"{"a":"x\u0026y","z":1}"#
        );
    }
}
