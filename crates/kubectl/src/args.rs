//! Translating resource arguments (`pods`, `pods,svc a b`, `pod/a svc/b`)
//! into (type word, names) pairs, as kubectl's resource builder does.

/// Type words with the names asked for under each (empty: all of them).
pub type TypeNames = Vec<(String, Vec<String>)>;

/// Parse the positional arguments of `get`/`delete`/`describe`/...
pub fn parse_resource_args(args: &[String]) -> Result<TypeNames, String> {
    if args.is_empty() {
        return Ok(Vec::new());
    }
    let slashed = args.iter().filter(|a| a.contains('/')).count();
    if slashed > 0 {
        if slashed != args.len() {
            return Err("there is no need to specify a resource type as a separate argument when passing arguments in resource/name form (e.g. 'tug get resource/<resource_name>' instead of 'tug get resource resource/<resource_name>'".into());
        }
        let mut out: TypeNames = Vec::new();
        for a in args {
            let (t, n) = a.split_once('/').unwrap_or((a, ""));
            if t.is_empty() || n.is_empty() {
                return Err(format!(
                    "arguments in resource/name form must have a single resource and name: {a:?}"
                ));
            }
            match out.iter_mut().find(|(ty, _)| ty == t) {
                Some((_, names)) => names.push(n.to_string()),
                None => out.push((t.to_string(), vec![n.to_string()])),
            }
        }
        return Ok(out);
    }
    let names: Vec<String> = args[1..].to_vec();
    Ok(args[0]
        .split(',')
        .filter(|t| !t.is_empty())
        .map(|t| (t.to_string(), names.clone()))
        .collect())
}

/// Did the user name objects with `type/name`?
pub fn uses_slash_form(args: &[String]) -> bool {
    args.iter().any(|a| a.contains('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn resource_args_group_by_type() {
        type Case<'a> = (Vec<&'a str>, Vec<(&'a str, Vec<&'a str>)>);
        let cases: Vec<Case> = vec![
            (vec!["pods"], vec![("pods", vec![])]),
            (vec!["deploy,po"], vec![("deploy", vec![]), ("po", vec![])]),
            (vec!["pods", "a", "b"], vec![("pods", vec!["a", "b"])]),
            (
                vec!["pod/a", "svc/b", "pod/c"],
                vec![("pod", vec!["a", "c"]), ("svc", vec!["b"])],
            ),
            (vec![], vec![]),
        ];
        for (input, want) in cases {
            let got = parse_resource_args(&s(&input)).unwrap();
            let want: TypeNames = want
                .into_iter()
                .map(|(t, n)| (t.to_string(), s(&n)))
                .collect();
            assert_eq!(got, want, "{input:?}");
        }
        assert!(parse_resource_args(&s(&["pods", "pod/a"])).is_err());
        assert!(parse_resource_args(&s(&["pod/"])).is_err());
    }
}
