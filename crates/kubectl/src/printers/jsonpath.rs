//! kubectl's JSONPath template dialect (`-o jsonpath=...`, custom columns,
//! `--sort-by`).
//!
//! A template is text with `{...}` actions: a path (`{.items[*].metadata.name}`,
//! `{$.kind}`, `{..image}`, `{.spec.containers[0:2]}`,
//! `{.status.conditions[?(@.type=="Ready")].status}`), a quoted literal
//! (`{"\n"}`), or `{range PATH}...{end}`, which renders its body once per
//! result with that result as the current object. Like kubectl's `get`,
//! missing keys render as nothing rather than failing; several results of
//! one action are separated by a space; maps and lists render as compact
//! JSON; strings render raw.

use serde_json::Value;

use super::json::go_compact;

/// One step of a path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// `$`: back to the root.
    Root,
    /// `@`: the current object (a no-op step).
    Current,
    /// `.name` or `['name']`.
    Field(String),
    /// `..name`: every `name` field at any depth.
    Recursive(String),
    /// `[*]` or `.*`: every element or value.
    Wildcard,
    /// `[n]`, negative from the end.
    Index(i64),
    /// `[a:b]`.
    Slice(Option<i64>, Option<i64>),
    /// `[?(@.path OP literal)]` or `[?(@.path)]`.
    Filter(Vec<Step>, Option<(String, Value)>),
}

/// A parsed template node.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Text(String),
    Path(Vec<Step>),
    Range(Vec<Step>, Vec<Node>),
}

/// A parsed template, ready to run against many objects.
#[derive(Debug, Clone)]
pub struct JsonPath {
    nodes: Vec<Node>,
}

impl JsonPath {
    /// Parse a template. A bare path without braces (`.metadata.name`) is
    /// accepted as kubectl's "relaxed" form and wrapped in `{}`.
    pub fn parse(template: &str) -> Result<JsonPath, String> {
        let t = template.trim();
        let owned;
        let src = if !t.contains('{') {
            owned = format!("{{{t}}}");
            owned.as_str()
        } else {
            template
        };
        let mut p = Parser {
            chars: src.chars().collect(),
            pos: 0,
        };
        let (nodes, ended) = p.nodes()?;
        if ended {
            return Err("not in range, nothing to end".into());
        }
        Ok(JsonPath { nodes })
    }

    /// Render the template against `root` as text.
    pub fn render(&self, root: &Value) -> String {
        let mut out = String::new();
        render_nodes(&self.nodes, root, root, &mut out);
        out
    }

    /// Every value the template's first path selects (custom columns and
    /// `--sort-by` use one path per template).
    pub fn values<'a>(&self, root: &'a Value) -> Vec<&'a Value> {
        for node in &self.nodes {
            if let Node::Path(steps) = node {
                return eval(steps, root, root);
            }
        }
        Vec::new()
    }
}

fn render_nodes(nodes: &[Node], root: &Value, current: &Value, out: &mut String) {
    for node in nodes {
        match node {
            Node::Text(t) => out.push_str(t),
            Node::Path(steps) => {
                let results = eval(steps, root, current);
                let texts: Vec<String> = results.iter().map(|v| text_of(v)).collect();
                out.push_str(&texts.join(" "));
            }
            Node::Range(steps, body) => {
                for item in eval(steps, root, current) {
                    render_nodes(body, root, item, out);
                }
            }
        }
    }
}

/// How one selected value prints: strings raw, numbers as Go prints them,
/// maps and lists as compact JSON.
pub fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => go_compact(v),
    }
}

fn eval<'a>(steps: &[Step], root: &'a Value, current: &'a Value) -> Vec<&'a Value> {
    let mut set: Vec<&'a Value> = vec![current];
    for step in steps {
        let mut next = Vec::new();
        for v in set {
            apply(step, root, v, &mut next);
        }
        set = next;
    }
    set
}

fn apply<'a>(step: &Step, root: &'a Value, v: &'a Value, out: &mut Vec<&'a Value>) {
    match step {
        Step::Root => out.push(root),
        Step::Current => out.push(v),
        Step::Field(name) => {
            if let Some(x) = v.as_object().and_then(|m| m.get(name)) {
                out.push(x);
            }
        }
        Step::Recursive(name) => recurse(name, v, out),
        Step::Wildcard => match v {
            Value::Array(a) => out.extend(a.iter()),
            Value::Object(m) => {
                let mut keys: Vec<&String> = m.keys().collect();
                keys.sort();
                out.extend(keys.into_iter().map(|k| &m[k]));
            }
            _ => {}
        },
        Step::Index(i) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let i = if *i < 0 { len + i } else { *i };
                if (0..len).contains(&i) {
                    out.push(&a[i as usize]);
                }
            }
        }
        Step::Slice(start, end) => {
            if let Value::Array(a) = v {
                let len = a.len() as i64;
                let norm = |x: i64| if x < 0 { (len + x).max(0) } else { x.min(len) };
                let s = norm(start.unwrap_or(0));
                let e = norm(end.unwrap_or(len));
                if s < e {
                    out.extend(a[s as usize..e as usize].iter());
                }
            }
        }
        Step::Filter(path, cmp) => {
            let items: Vec<&'a Value> = match v {
                Value::Array(a) => a.iter().collect(),
                other => vec![other],
            };
            for item in items {
                let found = eval(path, root, item);
                let keep = match cmp {
                    None => !found.is_empty(),
                    Some((op, lit)) => found.iter().any(|f| compare(f, op, lit)),
                };
                if keep {
                    out.push(item);
                }
            }
        }
    }
}

fn recurse<'a>(name: &str, v: &'a Value, out: &mut Vec<&'a Value>) {
    match v {
        Value::Object(m) => {
            if let Some(x) = m.get(name) {
                out.push(x);
            }
            for (k, child) in m {
                if k != name || !child.is_object() {
                    recurse(name, child, out);
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|c| recurse(name, c, out)),
        _ => {}
    }
}

fn compare(found: &Value, op: &str, lit: &Value) -> bool {
    use std::cmp::Ordering::*;
    let ord = match (found, lit) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (Value::Bool(a), Value::Bool(b)) => Some(a.cmp(b)),
        _ => None,
    };
    match (op, ord) {
        ("==", o) => o == Some(Equal),
        ("!=", o) => o != Some(Equal),
        ("<", Some(o)) => o == Less,
        ("<=", Some(o)) => o != Greater,
        (">", Some(o)) => o == Greater,
        (">=", Some(o)) => o != Less,
        _ => false,
    }
}

struct Parser {
    chars: Vec<char>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    /// Parse nodes until the input ends or an `{end}`; says which.
    fn nodes(&mut self) -> Result<(Vec<Node>, bool), String> {
        let mut nodes = Vec::new();
        let mut text = String::new();
        while let Some(c) = self.peek() {
            if c != '{' {
                text.push(c);
                self.pos += 1;
                continue;
            }
            if !text.is_empty() {
                nodes.push(Node::Text(std::mem::take(&mut text)));
            }
            self.pos += 1;
            let inner = self.action_text()?;
            let trimmed = inner.trim();
            if trimmed == "end" {
                return Ok((nodes, true));
            } else if let Some(path) = trimmed.strip_prefix("range").filter(|rest| {
                rest.starts_with(|c: char| {
                    c.is_whitespace() || c == '.' || c == '[' || c == '@' || c == '$'
                })
            }) {
                let steps = parse_path(path.trim())?;
                let (body, ended) = self.nodes()?;
                if !ended {
                    return Err("unclosed range: missing {end}".into());
                }
                nodes.push(Node::Range(steps, body));
            } else if trimmed.starts_with('"') || trimmed.starts_with('\'') {
                nodes.push(Node::Text(unquote(trimmed)?));
            } else {
                nodes.push(Node::Path(parse_path(trimmed)?));
            }
        }
        if !text.is_empty() {
            nodes.push(Node::Text(text));
        }
        Ok((nodes, false))
    }

    /// The text up to the matching `}`, skipping braces inside quotes.
    fn action_text(&mut self) -> Result<String, String> {
        let mut out = String::new();
        let mut quote: Option<char> = None;
        while let Some(c) = self.peek() {
            self.pos += 1;
            match quote {
                Some(q) => {
                    if c == '\\' {
                        out.push(c);
                        if let Some(n) = self.peek() {
                            out.push(n);
                            self.pos += 1;
                        }
                        continue;
                    }
                    if c == q {
                        quote = None;
                    }
                }
                None if c == '"' || c == '\'' => quote = Some(c),
                None if c == '}' => return Ok(out),
                None => {}
            }
            out.push(c);
        }
        Err("unclosed action".into())
    }
}

/// A quoted literal with Go escapes (`"\n"`, `"\t"`).
fn unquote(s: &str) -> Result<String, String> {
    let q = s.chars().next().unwrap_or('"');
    let inner = s
        .strip_prefix(q)
        .and_then(|r| r.strip_suffix(q))
        .ok_or_else(|| format!("unterminated quoted string: {s}"))?;
    let mut out = String::new();
    let mut it = inner.chars();
    while let Some(c) = it.next() {
        if c == '\\' {
            match it.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some('r') => out.push('\r'),
                Some(o) => out.push(o),
                None => out.push('\\'),
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

fn parse_path(src: &str) -> Result<Vec<Step>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut i = 0;
    let mut steps = Vec::new();
    let name_at = |i: &mut usize| -> String {
        let mut name = String::new();
        while *i < chars.len() {
            let c = chars[*i];
            if c == '\\' && *i + 1 < chars.len() {
                name.push(chars[*i + 1]);
                *i += 2;
                continue;
            }
            if c == '.' || c == '[' || c.is_whitespace() {
                break;
            }
            name.push(c);
            *i += 1;
        }
        name
    };
    while i < chars.len() {
        match chars[i] {
            '$' => {
                steps.push(Step::Root);
                i += 1;
            }
            '@' => {
                steps.push(Step::Current);
                i += 1;
            }
            '.' if chars.get(i + 1) == Some(&'.') => {
                i += 2;
                let name = name_at(&mut i);
                if name.is_empty() {
                    return Err(format!("invalid recursive descent in {src:?}"));
                }
                steps.push(Step::Recursive(name));
            }
            '.' => {
                i += 1;
                let name = name_at(&mut i);
                match name.as_str() {
                    "" => {}
                    "*" => steps.push(Step::Wildcard),
                    _ => steps.push(Step::Field(name)),
                }
            }
            '[' => {
                let close =
                    find_close(&chars, i).ok_or_else(|| format!("unterminated [ in {src:?}"))?;
                let inner: String = chars[i + 1..close].iter().collect();
                steps.push(parse_bracket(inner.trim())?);
                i = close + 1;
            }
            c if c.is_whitespace() => i += 1,
            _ => {
                // kubectl accepts a leading field without a dot inside range
                // bodies and custom columns (`{metadata.name}`).
                let name = name_at(&mut i);
                if name.is_empty() {
                    return Err(format!("unrecognized character in action: {:?}", chars[i]));
                }
                steps.push(Step::Field(name));
            }
        }
    }
    Ok(steps)
}

fn find_close(chars: &[char], open: usize) -> Option<usize> {
    let mut depth = 0;
    let mut quote: Option<char> = None;
    for (j, &c) in chars.iter().enumerate().skip(open) {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None => match c {
                '"' | '\'' => quote = Some(c),
                '[' => depth += 1,
                ']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(j);
                    }
                }
                _ => {}
            },
        }
    }
    None
}

fn parse_bracket(inner: &str) -> Result<Step, String> {
    if inner == "*" {
        return Ok(Step::Wildcard);
    }
    if let Some(f) = inner.strip_prefix("?(").and_then(|r| r.strip_suffix(')')) {
        return parse_filter(f.trim());
    }
    if inner.starts_with('\'') || inner.starts_with('"') {
        return Ok(Step::Field(unquote(inner)?));
    }
    let num = |s: &str| -> Result<Option<i64>, String> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse()
                .map(Some)
                .map_err(|_| format!("invalid array index {s:?}"))
        }
    };
    if let Some((a, b)) = inner.split_once(':') {
        let b = b.split(':').next().unwrap_or("");
        return Ok(Step::Slice(num(a)?, num(b)?));
    }
    Ok(Step::Index(num(inner)?.ok_or("empty array index")?))
}

fn parse_filter(f: &str) -> Result<Step, String> {
    for op in ["==", "!=", "<=", ">=", "<", ">"] {
        if let Some((l, r)) = f.split_once(op) {
            let path = parse_path(l.trim())?;
            let r = r.trim();
            let lit = if r.starts_with('"') || r.starts_with('\'') {
                Value::String(unquote(r)?)
            } else {
                serde_json::from_str(r).map_err(|_| format!("invalid filter literal {r:?}"))?
            };
            return Ok(Step::Filter(path, Some((op.to_string(), lit))));
        }
    }
    Ok(Step::Filter(parse_path(f)?, None))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "kind": "List",
            "items": [
                {"metadata": {"name": "a", "labels": {"app": "web", "k8s.io/x": "1"}},
                 "spec": {"replicas": 2, "containers": [{"image": "nginx"}, {"image": "redis"}]},
                 "status": {"conditions": [{"type": "Ready", "status": "True"}]}},
                {"metadata": {"name": "b"},
                 "spec": {"replicas": 1, "containers": [{"image": "busybox"}]},
                 "status": {"conditions": [{"type": "Ready", "status": "False"}]}}
            ]
        })
    }

    #[test]
    fn templates_render_like_kubectl() {
        let cases = [
            ("{.items[*].metadata.name}", "a b"),
            (".items[*].metadata.name", "a b"),
            ("{.kind}", "List"),
            ("{$.kind}", "List"),
            ("{.items[0].spec.replicas}", "2"),
            ("{.items[-1].metadata.name}", "b"),
            ("{.items[0:1].metadata.name}", "a"),
            ("{.items[5].metadata.name}", ""),
            ("{.missing.key}", ""),
            ("{..image}", "nginx redis busybox"),
            (
                "{.items[0].metadata.labels}",
                r#"{"app":"web","k8s.io/x":"1"}"#,
            ),
            (r"{.items[0].metadata.labels.k8s\.io/x}", "1"),
            ("{.items[0].metadata.labels['k8s.io/x']}", "1"),
            (
                r#"{range.items[*]}{.metadata.name}{"\t"}{.spec.replicas}{"\n"}{end}"#,
                "a\t2\nb\t1\n",
            ),
            (
                r#"{.items[?(@.status.conditions[0].status=="True")].metadata.name}"#,
                "a",
            ),
            ("{.items[?(@.spec.replicas>1)].metadata.name}", "a"),
            ("{.items[?(@.metadata.labels)].metadata.name}", "a"),
            ("names: {.items[*].metadata.name}!", "names: a b!"),
            (
                "{range .items[*]}[{range .spec.containers[*]}{.image},{end}]{end}",
                "[nginx,redis,][busybox,]",
            ),
        ];
        for (template, want) in cases {
            let jp = JsonPath::parse(template).unwrap_or_else(|e| panic!("{template}: {e}"));
            assert_eq!(jp.render(&doc()), want, "template {template}");
        }
    }

    #[test]
    fn bad_templates_are_errors() {
        for t in [
            "{.items[",
            "{range .items[*]}{.x}",
            "{end}",
            "{.a[x]}",
            "{.a",
        ] {
            assert!(JsonPath::parse(t).is_err(), "{t} should not parse");
        }
    }

    #[test]
    fn values_selects_the_first_path() {
        let jp = JsonPath::parse(".spec.containers[*].image").unwrap();
        let d = doc();
        let got: Vec<String> = jp
            .values(&d["items"][0])
            .iter()
            .map(|v| text_of(v))
            .collect();
        assert_eq!(got, ["nginx", "redis"]);
    }
}
