//! `-o custom-columns=HEADER:PATH,...` and `--sort-by`.

use std::cmp::Ordering;

use serde_json::Value;

use super::jsonpath::{text_of, JsonPath};

/// Parsed custom columns: headers and their paths.
#[derive(Debug, Clone)]
pub struct CustomColumns {
    pub columns: Vec<(String, JsonPath)>,
}

impl CustomColumns {
    /// Parse `NAME:.metadata.name,IMAGE:.spec.containers[*].image`.
    pub fn parse(spec: &str) -> Result<CustomColumns, String> {
        if spec.is_empty() {
            return Err("custom-columns format specified but no custom columns given".into());
        }
        let mut columns = Vec::new();
        for part in spec.split(',') {
            let (header, path) = part.split_once(':').ok_or_else(|| {
                format!(
                    "unexpected custom-columns spec: {part}, expected <header>:<json-path-expr>"
                )
            })?;
            columns.push((header.to_string(), JsonPath::parse(path)?));
        }
        Ok(CustomColumns { columns })
    }

    /// The header row.
    pub fn header(&self) -> Vec<String> {
        self.columns.iter().map(|(h, _)| h.clone()).collect()
    }

    /// One object's row: several values joined by commas, `<none>` when
    /// the path selects nothing.
    pub fn row(&self, obj: &Value) -> Vec<String> {
        self.columns
            .iter()
            .map(|(_, jp)| {
                let vals = jp.values(obj);
                if vals.is_empty() {
                    "<none>".to_string()
                } else {
                    vals.iter()
                        .map(|v| text_of(v))
                        .collect::<Vec<_>>()
                        .join(",")
                }
            })
            .collect()
    }
}

/// Order two objects by the first value a `--sort-by` path selects:
/// numbers numerically, strings lexically, missing values first.
pub fn compare_by(jp: &JsonPath, a: &Value, b: &Value) -> Ordering {
    let key = |v: &Value| jp.values(v).first().map(|x| (*x).clone());
    match (key(a), key(b)) {
        (None, None) => Ordering::Equal,
        (None, _) => Ordering::Less,
        (_, None) => Ordering::Greater,
        (Some(Value::Number(x)), Some(Value::Number(y))) => x
            .as_f64()
            .partial_cmp(&y.as_f64())
            .unwrap_or(Ordering::Equal),
        (Some(x), Some(y)) => text_of(&x).cmp(&text_of(&y)),
    }
}

/// Stable-sort `items` by a `--sort-by` path.
pub fn sort_values(items: &mut [Value], jp: &JsonPath) {
    items.sort_by(|a, b| compare_by(jp, a, b));
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn custom_columns_rows() {
        let cc = CustomColumns::parse(
            "NAME:.metadata.name,IMAGES:.spec.containers[*].image,NODE:.spec.nodeName",
        )
        .unwrap();
        assert_eq!(cc.header(), ["NAME", "IMAGES", "NODE"]);
        let obj = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"image": "a"}, {"image": "b"}]}});
        assert_eq!(cc.row(&obj), ["p", "a,b", "<none>"]);
        assert!(CustomColumns::parse("NAME").is_err());
        assert!(CustomColumns::parse("").is_err());
    }

    #[test]
    fn sort_by_orders_numbers_strings_and_missing() {
        let cases = [
            (
                ".spec.replicas",
                vec![
                    json!({"spec": {"replicas": 10}}),
                    json!({"spec": {"replicas": 9}}),
                    json!({}),
                ],
                vec![
                    "{}",
                    "{\"spec\":{\"replicas\":9}}",
                    "{\"spec\":{\"replicas\":10}}",
                ],
            ),
            (
                "{.metadata.name}",
                vec![
                    json!({"metadata": {"name": "b"}}),
                    json!({"metadata": {"name": "a"}}),
                ],
                vec![
                    "{\"metadata\":{\"name\":\"a\"}}",
                    "{\"metadata\":{\"name\":\"b\"}}",
                ],
            ),
        ];
        for (path, mut items, want) in cases {
            sort_values(&mut items, &JsonPath::parse(path).unwrap());
            let got: Vec<String> = items.iter().map(|v| v.to_string()).collect();
            assert_eq!(got, want, "{path}");
        }
    }
}
