//! `-o yaml` the way kubectl writes it (Go's yaml.v2 via sigs.k8s.io/yaml):
//! sorted keys, two-space indent, list items at their key's indent, strings
//! plain unless they would read back as another type (then double-quoted,
//! e.g. timestamps and `"80"`) or start with a YAML indicator (then
//! single-quoted), multi-line strings as `|` blocks.

use serde_json::Value;

/// Render a document (no leading `---`), ending in a newline.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => list(a, 0, &mut out),
        other => {
            out.push_str(&scalar(other, 0));
            out.push('\n');
        }
    }
    out
}

fn pad(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

fn map(m: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    let mut keys: Vec<&String> = m.keys().collect();
    keys.sort();
    for (i, k) in keys.into_iter().enumerate() {
        // The first key of a list item continues the `- ` line.
        if i > 0 || !out.ends_with("- ") {
            pad(indent, out);
        }
        out.push_str(&string(k, indent));
        out.push(':');
        value_after_key(&m[k], indent, out);
    }
}

fn value_after_key(v: &Value, indent: usize, out: &mut String) {
    match v {
        Value::Object(c) if !c.is_empty() => {
            out.push('\n');
            map(c, indent + 2, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            list(a, indent, out);
        }
        other => {
            out.push(' ');
            out.push_str(&scalar(other, indent));
            out.push('\n');
        }
    }
}

fn list(a: &[Value], indent: usize, out: &mut String) {
    for item in a {
        if !out.ends_with("- ") {
            pad(indent, out);
        }
        out.push_str("- ");
        match item {
            Value::Object(c) if !c.is_empty() => map(c, indent + 2, out),
            Value::Array(c) if !c.is_empty() => list(c, indent + 2, out),
            other => {
                out.push_str(&scalar(other, indent + 2));
                out.push('\n');
            }
        }
    }
}

fn scalar(v: &Value, indent: usize) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s, indent),
        Value::Object(_) => "{}".into(),
        Value::Array(_) => "[]".into(),
    }
}

/// One string scalar in yaml.v2's chosen style.
fn string(s: &str, indent: usize) -> String {
    if s.contains('\n') && !s.chars().any(|c| c.is_control() && c != '\n') {
        let chomp = if s.ends_with("\n\n") {
            "+"
        } else if s.ends_with('\n') {
            ""
        } else {
            "-"
        };
        // A leading space needs an explicit indentation indicator.
        let ind = if s.starts_with(' ') { "2" } else { "" };
        let mut out = format!("|{ind}{chomp}");
        let body = s.strip_suffix('\n').unwrap_or(s);
        for line in body.split('\n') {
            out.push('\n');
            if !line.is_empty() {
                out.push_str(&" ".repeat(indent + 2));
                out.push_str(line);
            }
        }
        return out;
    }
    if resolves_to_non_string(s) {
        return double_quoted(s);
    }
    if plain_allowed(s) {
        return s.to_string();
    }
    if s.chars().any(|c| c.is_control()) {
        return double_quoted(s);
    }
    format!("'{}'", s.replace('\'', "''"))
}

fn double_quoted(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Would yaml.v2 read this plain scalar back as null, a bool, a number or a
/// timestamp?
fn resolves_to_non_string(s: &str) -> bool {
    const WORDS: &[&str] = &[
        "", "~", "null", "Null", "NULL", "true", "True", "TRUE", "false", "False", "FALSE", "y",
        "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
        "OFF", ".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF", "-.inf", "-.Inf", "-.INF",
        ".nan", ".NaN", ".NAN", "<<",
    ];
    if WORDS.contains(&s) {
        return true;
    }
    let first = s.chars().next().unwrap_or(' ');
    if !(first.is_ascii_digit() || matches!(first, '-' | '+' | '.')) {
        return false;
    }
    let body = s.trim_start_matches(['-', '+']).replace('_', "");
    let is_int = !body.is_empty()
        && (body.chars().all(|c| c.is_ascii_digit())
            || body
                .strip_prefix("0x")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
            || body
                .strip_prefix("0b")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c == '0' || c == '1'))
            || body
                .strip_prefix("0o")
                .is_some_and(|h| !h.is_empty() && h.chars().all(|c| ('0'..='7').contains(&c))));
    is_int || is_float(&body) || is_base60(&body) || is_timestamp(s)
}

/// `(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
fn is_float(s: &str) -> bool {
    let (mant, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mant_ok = match mant.split_once('.') {
        Some(("", f)) => !f.is_empty() && f.chars().all(|c| c.is_ascii_digit()),
        Some((i, f)) => {
            !i.is_empty()
                && i.chars().all(|c| c.is_ascii_digit())
                && f.chars().all(|c| c.is_ascii_digit())
        }
        None => !mant.is_empty() && mant.chars().all(|c| c.is_ascii_digit()),
    };
    let exp_ok = exp.is_none_or(|e| {
        let e = e.trim_start_matches(['-', '+']);
        !e.is_empty() && e.chars().all(|c| c.is_ascii_digit())
    });
    mant_ok && exp_ok
}

/// YAML 1.1 sexagesimal numbers such as `1:20`.
fn is_base60(s: &str) -> bool {
    let mut parts = s.split(':');
    let head = parts.next().unwrap_or("");
    let rest: Vec<&str> = parts.collect();
    if rest.is_empty() || head.is_empty() || !head.chars().all(|c| c.is_ascii_digit()) {
        return false;
    }
    let last = rest.len() - 1;
    rest.iter().enumerate().all(|(i, p)| {
        let p = if i == last {
            p.split('.').next().unwrap_or("")
        } else {
            p
        };
        !p.is_empty()
            && p.len() <= 2
            && p.chars().all(|c| c.is_ascii_digit())
            && p.parse::<u32>().is_ok_and(|n| n < 60)
    })
}

/// yaml.v2's timestamp forms: a date, optionally followed by a time.
fn is_timestamp(s: &str) -> bool {
    let date_len = s.find(['T', 't', ' ']).unwrap_or(s.len());
    let date: Vec<&str> = s[..date_len].split('-').collect();
    let date_ok = date.len() == 3
        && date[0].len() == 4
        && date
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 4 && p.chars().all(|c| c.is_ascii_digit()));
    if !date_ok {
        return false;
    }
    let time = &s[date_len..];
    time.is_empty() || time[1..].split(':').count() >= 3
}

/// May this string be written plain (libyaml's scalar analysis, block
/// context)?
fn plain_allowed(s: &str) -> bool {
    let chars: Vec<char> = s.chars().collect();
    let first = chars[0];
    let blank_after = |i: usize| chars.get(i + 1).is_none_or(|c| *c == ' ');
    if "#,[]{}&*!|>'\"%@`".contains(first) {
        return false;
    }
    if matches!(first, '-' | '?' | ':') && blank_after(0) {
        return false;
    }
    if s.starts_with("---") || s.starts_with("...") {
        return false;
    }
    if first == ' ' || chars[chars.len() - 1] == ' ' {
        return false;
    }
    for (i, &c) in chars.iter().enumerate() {
        if c == ':' && blank_after(i) {
            return false;
        }
        if c == '#' && i > 0 && chars[i - 1] == ' ' {
            return false;
        }
        if c.is_control() || c == '\u{feff}' {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn strings_take_yaml_v2_styles() {
        let cases = [
            ("nginx:1.25", "nginx:1.25"),
            ("2026-11-28T13:27:56Z", "\"2026-11-28T13:27:56Z\""),
            ("2026-11-28", "\"2026-11-28\""),
            ("80", "\"80\""),
            ("1.5", "\"1.5\""),
            ("1e3", "\"1e3\""),
            ("0x1F", "\"0x1F\""),
            ("1:20", "\"1:20\""),
            ("true", "\"true\""),
            ("no", "\"no\""),
            ("", "\"\""),
            ("~", "\"~\""),
            ("*", "'*'"),
            ("{\"a\":1}", "'{\"a\":1}'"),
            ("it's", "it's"),
            ("- x", "'- x'"),
            ("a: b", "'a: b'"),
            ("/dev/termination-log", "/dev/termination-log"),
            ("-x", "-x"),
            ("10.0.0.1", "10.0.0.1"),
            ("e3", "e3"),
            ("v1", "v1"),
            ("a\tb", "\"a\\tb\""),
        ];
        for (input, want) in cases {
            assert_eq!(string(input, 0), want, "string {input:?}");
        }
    }

    #[test]
    fn documents_render_like_kubectl() {
        let v = json!({
            "spec": {"containers": [{"name": "a", "image": "nginx", "args": ["x", "y"], "resources": {}}]},
            "kind": "Pod",
            "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z", "labels": {"app": "web"}},
            "data": {"script": "echo hi\nexit 0\n", "two": "a\nb"},
            "list": [[1, 2], []],
            // yaml.v2 reads y/n as booleans, so even keys get quoted.
            "n": null,
        });
        let want = "\
data:
  script: |
    echo hi
    exit 0
  two: |-
    a
    b
kind: Pod
list:
- - 1
  - 2
- []
metadata:
  creationTimestamp: \"2026-01-01T00:00:00Z\"
  labels:
    app: web
\"n\": null
spec:
  containers:
  - args:
    - x
    - \"y\"
    image: nginx
    name: a
    resources: {}
";
        assert_eq!(to_yaml(&v), want);
    }
}
