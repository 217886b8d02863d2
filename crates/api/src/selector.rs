//! Label selectors, as in `k8s.io/apimachinery/pkg/labels`.
//!
//! Clients filter lists and watches with `?labelSelector=`, and controllers
//! find the objects they own with a typed `metav1.LabelSelector` (a
//! Deployment's `spec.selector`, a Service's pod selector, ...). Both forms
//! end up here as one parsed [`LabelSelector`] that matches label sets.
//!
//! What is copied from upstream, because clients depend on it:
//!
//! - The string grammar: `a=b`, `a==b`, `a!=b`, `a in (x,y)`, `a notin (x)`,
//!   `a` (exists), `!a` (does not exist), and the integer comparisons `a>1`,
//!   `a<1`; requirements are separated by `,` and all must hold. Spaces,
//!   tabs and line breaks around tokens are ignored. The empty string selects
//!   everything.
//! - Keys and values are validated like upstream (an optional DNS-subdomain
//!   prefix and `/`, then a name of at most 63 characters; values of at most
//!   63 characters, possibly empty), and syntax errors carry upstream's
//!   messages, e.g. `found ',', expected: identifier after ','`.
//! - `!=` and `notin` match objects that lack the key; `=`, `in`, `>`, `<`
//!   do not.
//! - The canonical string form ([`Display`](fmt::Display)) sorts requirements
//!   by key (stably) and the values of `in`/`notin` sets, so equal selectors
//!   print equally and the output parses back to the same selector.
//! - A typed selector converts like `metav1.LabelSelectorAsSelector`: a
//!   missing (`None`) selector matches nothing and an empty one matches
//!   everything. "Matches nothing" is a state of [`LabelSelector`] itself
//!   (see [`LabelSelector::nothing`]); like upstream it prints as `""`, so it
//!   must not be round-tripped through its string form.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;

/// Longest label value, and longest name part of a label key.
const MAX_NAME_LENGTH: usize = 63;
/// Longest DNS-subdomain prefix of a label key.
const MAX_PREFIX_LENGTH: usize = 253;

const KEY_NAME_MESSAGE: &str = "must consist of alphanumeric characters, '-', '_' or '.', and \
     must start and end with an alphanumeric character (e.g. 'MyName', or 'my.name', or \
     '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const VALUE_MESSAGE: &str = "a valid label must be an empty string or consist of alphanumeric \
     characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. \
     'MyValue', or 'my_value', or '12345', regex used for validation is \
     '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";
const SUBDOMAIN_MESSAGE: &str = "a lowercase RFC 1123 subdomain must consist of lower case \
     alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character \
     (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Why a label selector, or one of its requirements, was rejected.
///
/// Every variant is a client error: the API server answers it with HTTP 400
/// and the message as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    /// The selector string does not follow the grammar. The message is
    /// upstream's, e.g. `found 'b', expected: ',' or 'end of string'`.
    #[error("{0}")]
    Syntax(String),
    /// A key is not a valid label key.
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey {
        /// The rejected key.
        key: String,
        /// Upstream's validation messages, joined by `; `.
        reason: String,
    },
    /// A value is not a valid label value (or not an integer for `>`/`<`).
    #[error("invalid label value {value:?} for key {key:?}: {reason}")]
    InvalidValue {
        /// The key the value belongs to.
        key: String,
        /// The rejected value.
        value: String,
        /// Upstream's validation messages, joined by `; `.
        reason: String,
    },
    /// The number of values does not suit the operator.
    #[error("invalid values for label key {key:?}: {reason}")]
    InvalidValues {
        /// The key of the requirement.
        key: String,
        /// What is wrong, in upstream's words.
        reason: String,
    },
    /// A `matchExpressions` operator is not `In`, `NotIn`, `Exists` or
    /// `DoesNotExist`.
    #[error("{0:?} is not a valid label selector operator")]
    InvalidOperator(String),
}

/// How a [`Requirement`] relates its key to its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    /// `key=value`: the key is present with that value.
    Equals,
    /// `key==value`: the same as [`Operator::Equals`], kept apart so the
    /// selector prints as written.
    DoubleEquals,
    /// `key!=value`: the key is absent or has another value.
    NotEquals,
    /// `key in (a,b)`: the key is present with one of the values.
    In,
    /// `key notin (a,b)`: the key is absent or has none of the values.
    NotIn,
    /// `key`: the key is present.
    Exists,
    /// `!key`: the key is absent.
    DoesNotExist,
    /// `key>n`: the key is present and its value is an integer above `n`.
    GreaterThan,
    /// `key<n`: the key is present and its value is an integer below `n`.
    LessThan,
}

impl Operator {
    /// Upstream's name for the operator (`selection.Operator`): `=`, `==`,
    /// `!=`, `in`, `notin`, `exists`, `!`, `gt`, `lt`.
    pub fn as_str(self) -> &'static str {
        match self {
            Operator::Equals => "=",
            Operator::DoubleEquals => "==",
            Operator::NotEquals => "!=",
            Operator::In => "in",
            Operator::NotIn => "notin",
            Operator::Exists => "exists",
            Operator::DoesNotExist => "!",
            Operator::GreaterThan => "gt",
            Operator::LessThan => "lt",
        }
    }
}

/// Read access to a set of labels, so selectors can match a typed map as
/// well as the `metadata.labels` object of a JSON object without copying it.
pub trait Labels {
    /// The value of the label `key`, if the label is present.
    fn label(&self, key: &str) -> Option<&str>;
}

impl Labels for BTreeMap<String, String> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

impl<S: std::hash::BuildHasher> Labels for HashMap<String, String, S> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

/// A JSON `metadata.labels` object; entries whose value is not a string are
/// treated as absent.
impl Labels for serde_json::Map<String, serde_json::Value> {
    fn label(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(serde_json::Value::as_str)
    }
}

/// One condition of a selector: a key, an operator and its values.
///
/// Built only through [`Requirement::new`] (or by parsing), so it is always
/// valid. Values are kept sorted and without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Requirement {
    key: String,
    operator: Operator,
    values: Vec<String>,
}

impl Requirement {
    /// Validates and builds a requirement, like upstream's `NewRequirement`:
    /// the key must be a valid label key; `In`/`NotIn` need at least one
    /// value, `Equals`/`DoubleEquals`/`NotEquals` exactly one,
    /// `Exists`/`DoesNotExist` none, and `GreaterThan`/`LessThan` exactly one
    /// that is an integer; every value must be a valid label value. The
    /// first problem found is returned.
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        mut values: Vec<String>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        validate_key(&key)?;
        let count_error = |reason: &str| SelectorError::InvalidValues {
            key: key.clone(),
            reason: reason.to_string(),
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err(count_error(
                    "for 'in', 'notin' operators, values set can't be empty",
                ));
            }
            Operator::Equals | Operator::DoubleEquals | Operator::NotEquals
                if values.len() != 1 =>
            {
                return Err(count_error(
                    "exact-match compatibility requires one single value",
                ));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err(count_error(
                    "values set must be empty for exists and does not exist",
                ));
            }
            Operator::GreaterThan | Operator::LessThan => {
                if values.len() != 1 {
                    return Err(count_error(
                        "for 'Gt', 'Lt' operators, exactly one value is required",
                    ));
                }
                if let Some(bad) = values.iter().find(|v| v.parse::<i64>().is_err()) {
                    return Err(SelectorError::InvalidValue {
                        key: key.clone(),
                        value: bad.clone(),
                        reason: "for 'Gt', 'Lt' operators, the value must be an integer".into(),
                    });
                }
            }
            _ => {}
        }
        for value in &values {
            validate_value(&key, value)?;
        }
        values.sort();
        values.dedup();
        Ok(Requirement {
            key,
            operator,
            values,
        })
    }

    /// The label key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The operator.
    pub fn operator(&self) -> Operator {
        self.operator
    }

    /// The values, sorted and without duplicates (empty for `Exists` and
    /// `DoesNotExist`).
    pub fn values(&self) -> &[String] {
        &self.values
    }

    /// Whether the labels satisfy this requirement (upstream's
    /// `Requirement.Matches`).
    pub fn matches<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        let value = labels.label(&self.key);
        match self.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In => {
                value.is_some_and(|v| self.has_value(v))
            }
            Operator::NotEquals | Operator::NotIn => value.is_none_or(|v| !self.has_value(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::GreaterThan | Operator::LessThan => {
                let (Some(actual), [wanted]) = (value, self.values.as_slice()) else {
                    return false;
                };
                let (Ok(actual), Ok(wanted)) = (actual.parse::<i64>(), wanted.parse::<i64>())
                else {
                    return false;
                };
                if self.operator == Operator::GreaterThan {
                    actual > wanted
                } else {
                    actual < wanted
                }
            }
        }
    }

    fn has_value(&self, value: &str) -> bool {
        self.values.iter().any(|v| v == value)
    }
}

/// Upstream's `Requirement.String`: `!key`, `key`, `key=v`, `key==v`,
/// `key!=v`, `key in (a,b)`, `key notin (a,b)`, `key>n`, `key<n`.
impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (before, after) = match self.operator {
            Operator::Exists => return f.write_str(&self.key),
            Operator::DoesNotExist => return write!(f, "!{}", self.key),
            Operator::Equals => ("=", ""),
            Operator::DoubleEquals => ("==", ""),
            Operator::NotEquals => ("!=", ""),
            Operator::In => (" in (", ")"),
            Operator::NotIn => (" notin (", ")"),
            Operator::GreaterThan => (">", ""),
            Operator::LessThan => ("<", ""),
        };
        write!(f, "{}{before}{}{after}", self.key, self.values.join(","))
    }
}

/// A parsed label selector: the AND of its requirements, or the selector
/// that matches nothing.
///
/// [`Default`] is [`LabelSelector::everything`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct LabelSelector {
    /// Sorted by key; requirements with the same key keep their order.
    requirements: Vec<Requirement>,
    /// Upstream's `labels.Nothing()`: matches no label set at all.
    nothing: bool,
}

impl LabelSelector {
    /// The selector that matches every label set (the empty selector).
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// The selector that matches no label set, which is what a missing
    /// (`nil`) typed selector means. It is not [empty](Self::is_empty) and
    /// prints as `""` like upstream's `labels.Nothing()`.
    pub fn nothing() -> Self {
        LabelSelector {
            requirements: Vec::new(),
            nothing: true,
        }
    }

    /// A selector requiring all the given requirements.
    pub fn from_requirements(requirements: Vec<Requirement>) -> Self {
        let mut selector = LabelSelector {
            requirements,
            nothing: false,
        };
        selector.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        selector
    }

    /// A selector requiring each label of `set` to be present with its value
    /// (upstream's `ValidatedSelectorFromSet`); an empty set selects
    /// everything.
    pub fn from_set(set: &BTreeMap<String, String>) -> Result<Self, SelectorError> {
        let requirements = set
            .iter()
            .map(|(k, v)| Requirement::new(k.as_str(), Operator::Equals, vec![v.clone()]))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LabelSelector::from_requirements(requirements))
    }

    /// This selector with one more requirement (a no-op on
    /// [`nothing`](Self::nothing)).
    pub fn with_requirement(mut self, requirement: Requirement) -> Self {
        if !self.nothing {
            let at = self
                .requirements
                .partition_point(|r| r.key <= requirement.key);
            self.requirements.insert(at, requirement);
        }
        self
    }

    /// The requirements, sorted by key. Empty for both
    /// [`everything`](Self::everything) and [`nothing`](Self::nothing); tell
    /// them apart with [`matches_nothing`](Self::matches_nothing).
    pub fn requirements(&self) -> &[Requirement] {
        &self.requirements
    }

    /// Whether the selector does not restrict anything (matches every label
    /// set). False for [`nothing`](Self::nothing).
    pub fn is_empty(&self) -> bool {
        !self.nothing && self.requirements.is_empty()
    }

    /// Whether this is the selector that matches nothing.
    pub fn matches_nothing(&self) -> bool {
        self.nothing
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_labels(labels)
    }

    /// [`matches`](Self::matches) for any [`Labels`], e.g. the
    /// `metadata.labels` map of a JSON object.
    pub fn matches_labels<L: Labels + ?Sized>(&self, labels: &L) -> bool {
        !self.nothing && self.requirements.iter().all(|r| r.matches(labels))
    }

    /// If the first requirement on `key` pins it to one value (`=`, `==`, or
    /// `in` with one value), that value (upstream's `RequiresExactMatch`).
    pub fn requires_exact_match(&self, key: &str) -> Option<&str> {
        let requirement = self.requirements.iter().find(|r| r.key == key)?;
        match (requirement.operator, requirement.values.as_slice()) {
            (Operator::Equals | Operator::DoubleEquals | Operator::In, [value]) => Some(value),
            _ => None,
        }
    }
}

/// The canonical string form: requirements joined by `,` (no spaces).
/// [`LabelSelector::nothing`] prints as `""`, like upstream.
impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, requirement) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{requirement}")?;
        }
        Ok(())
    }
}

impl std::str::FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse(s)
    }
}

/// Parses the string form of a label selector (`?labelSelector=`), with
/// upstream's grammar and error messages. The empty string (or only
/// whitespace) selects everything.
pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
    let mut parser = Parser {
        tokens: lex(s),
        position: 0,
    };
    let requirements = parser.parse()?;
    Ok(LabelSelector::from_requirements(requirements))
}

/// Converts a typed `metav1.LabelSelector` like upstream's
/// `LabelSelectorAsSelector`: `matchLabels` become `=` requirements,
/// `matchExpressions` use `In`, `NotIn`, `Exists` or `DoesNotExist` (spelled
/// exactly so), and a selector with neither selects everything.
///
/// A missing selector (`nil` upstream) matches nothing; see
/// [`from_optional_label_selector`].
pub fn from_label_selector(
    selector: &metav1::LabelSelector,
) -> Result<LabelSelector, SelectorError> {
    let mut requirements = Vec::new();
    for (key, value) in selector.match_labels.iter().flatten() {
        requirements.push(Requirement::new(
            key.as_str(),
            Operator::Equals,
            vec![value.clone()],
        )?);
    }
    for expression in selector.match_expressions.iter().flatten() {
        let operator = match expression.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => return Err(SelectorError::InvalidOperator(other.to_string())),
        };
        let values = expression.values.clone().unwrap_or_default();
        requirements.push(Requirement::new(expression.key.as_str(), operator, values)?);
    }
    Ok(LabelSelector::from_requirements(requirements))
}

/// [`from_label_selector`] for an optional field: `None` gives
/// [`LabelSelector::nothing`], as a `nil` selector matches no objects
/// upstream.
pub fn from_optional_label_selector(
    selector: Option<&metav1::LabelSelector>,
) -> Result<LabelSelector, SelectorError> {
    match selector {
        None => Ok(LabelSelector::nothing()),
        Some(selector) => from_label_selector(selector),
    }
}

/// Checks a label key like upstream's `IsQualifiedName`.
pub fn validate_key(key: &str) -> Result<(), SelectorError> {
    let mut problems = Vec::new();
    let parts: Vec<&str> = key.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                problems.push("prefix part must be non-empty".to_string());
            } else {
                if prefix.len() > MAX_PREFIX_LENGTH {
                    problems.push(format!(
                        "prefix part must be no more than {MAX_PREFIX_LENGTH} characters"
                    ));
                }
                if !is_dns1123_subdomain(prefix) {
                    problems.push(format!("prefix part {SUBDOMAIN_MESSAGE}"));
                }
            }
            *name
        }
        _ => {
            return Err(SelectorError::InvalidKey {
                key: key.to_string(),
                reason: format!(
                    "a valid label key {KEY_NAME_MESSAGE} with an optional DNS subdomain \
                     prefix and '/' (e.g. 'example.com/MyName')"
                ),
            });
        }
    };
    if name.is_empty() {
        problems.push("name part must be non-empty".to_string());
    } else if name.len() > MAX_NAME_LENGTH {
        problems.push(format!(
            "name part must be no more than {MAX_NAME_LENGTH} characters"
        ));
    }
    if !is_label_name(name) {
        problems.push(format!("name part {KEY_NAME_MESSAGE}"));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidKey {
            key: key.to_string(),
            reason: problems.join("; "),
        })
    }
}

/// Checks a label value like upstream's `IsValidLabelValue`; `key` only
/// names the label in the error.
pub fn validate_value(key: &str, value: &str) -> Result<(), SelectorError> {
    let mut problems = Vec::new();
    if value.len() > MAX_NAME_LENGTH {
        problems.push(format!("must be no more than {MAX_NAME_LENGTH} characters"));
    }
    if !value.is_empty() && !is_label_name(value) {
        problems.push(VALUE_MESSAGE.to_string());
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(SelectorError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            reason: problems.join("; "),
        })
    }
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`
fn is_label_name(s: &str) -> bool {
    let bytes = s.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*`
fn is_dns1123_subdomain(s: &str) -> bool {
    s.split('.').all(|label| {
        let bytes = label.as_bytes();
        let edge = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                edge(first) && edge(last) && bytes.iter().all(|b| edge(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

/// A lexer token, as in upstream's `labels.Token`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    EndOfString,
    ClosedPar,
    Comma,
    DoesNotExist,
    DoubleEquals,
    Equals,
    GreaterThan,
    Identifier,
    In,
    LessThan,
    NotEquals,
    NotIn,
    OpenPar,
}

/// Whether keywords (`in`, `notin`) are operators here, or plain
/// identifiers (keys and values may be spelled `in`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

fn is_whitespace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(b: u8) -> bool {
    matches!(b, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

/// Splits the selector into tokens, always ending with `EndOfString`.
///
/// Every byte is whitespace, a special symbol (both ASCII), or part of an
/// identifier, so identifiers end on character boundaries and the lexer
/// cannot fail; bad characters are caught when keys and values are
/// validated.
fn lex(s: &str) -> Vec<(Token, &str)> {
    let bytes = s.as_bytes();
    let mut tokens = Vec::new();
    let mut pos = 0;
    loop {
        while pos < bytes.len() && is_whitespace(bytes[pos]) {
            pos += 1;
        }
        let Some(&first) = bytes.get(pos) else {
            tokens.push((Token::EndOfString, ""));
            return tokens;
        };
        let start = pos;
        let token = if is_special(first) {
            // Longest match: "==" and "!=" are the only two-symbol tokens.
            let (token, len) = match (first, bytes.get(pos + 1)) {
                (b'=', Some(b'=')) => (Token::DoubleEquals, 2),
                (b'!', Some(b'=')) => (Token::NotEquals, 2),
                (b'=', _) => (Token::Equals, 1),
                (b'!', _) => (Token::DoesNotExist, 1),
                (b'(', _) => (Token::OpenPar, 1),
                (b')', _) => (Token::ClosedPar, 1),
                (b',', _) => (Token::Comma, 1),
                (b'>', _) => (Token::GreaterThan, 1),
                _ => (Token::LessThan, 1),
            };
            pos += len;
            token
        } else {
            while pos < bytes.len() && !is_special(bytes[pos]) && !is_whitespace(bytes[pos]) {
                pos += 1;
            }
            match &s[start..pos] {
                "in" => Token::In,
                "notin" => Token::NotIn,
                _ => Token::Identifier,
            }
        };
        tokens.push((token, &s[start..pos]));
    }
}

/// Upstream's recursive-descent parser, over the tokens of the whole input.
struct Parser<'a> {
    tokens: Vec<(Token, &'a str)>,
    position: usize,
}

fn syntax(message: String) -> SelectorError {
    SelectorError::Syntax(message)
}

impl<'a> Parser<'a> {
    fn lookahead(&self, context: Context) -> (Token, &'a str) {
        let at = self.position.min(self.tokens.len().saturating_sub(1));
        let (token, literal) = self
            .tokens
            .get(at)
            .copied()
            .unwrap_or((Token::EndOfString, ""));
        match token {
            Token::In | Token::NotIn if context == Context::Values => (Token::Identifier, literal),
            _ => (token, literal),
        }
    }

    fn consume(&mut self, context: Context) -> (Token, &'a str) {
        let item = self.lookahead(context);
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        item
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            let (token, literal) = self.lookahead(Context::Values);
            match token {
                Token::Identifier | Token::DoesNotExist => {
                    let requirement = self.parse_requirement().map_err(|e| match e {
                        SelectorError::Syntax(m) => {
                            syntax(format!("unable to parse requirement: {m}"))
                        }
                        other => other,
                    })?;
                    requirements.push(requirement);
                    let (token, literal) = self.consume(Context::Values);
                    match token {
                        Token::EndOfString => return Ok(requirements),
                        Token::Comma => {
                            let (next, literal) = self.lookahead(Context::Values);
                            if next != Token::Identifier && next != Token::DoesNotExist {
                                return Err(syntax(format!(
                                    "found '{literal}', expected: identifier after ','"
                                )));
                            }
                        }
                        _ => {
                            return Err(syntax(format!(
                                "found '{literal}', expected: ',' or 'end of string'"
                            )));
                        }
                    }
                }
                Token::EndOfString => return Ok(requirements),
                _ => {
                    return Err(syntax(format!(
                        "found '{literal}', expected: !, identifier, or 'end of string'"
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let (key, unary) = self.parse_key_and_infer_operator()?;
        if let Some(operator) = unary {
            return Requirement::new(key, operator, Vec::new());
        }
        let operator = self.parse_operator()?;
        let values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => self.parse_exact_value()?,
        };
        Requirement::new(key, operator, values)
    }

    /// Reads `[!]key`; the operator is `DoesNotExist` after `!`, `Exists`
    /// for a bare key followed by `,` or the end, and otherwise still to be
    /// read.
    fn parse_key_and_infer_operator(
        &mut self,
    ) -> Result<(&'a str, Option<Operator>), SelectorError> {
        let (mut token, mut literal) = self.consume(Context::Values);
        let mut operator = None;
        if token == Token::DoesNotExist {
            operator = Some(Operator::DoesNotExist);
            (token, literal) = self.consume(Context::Values);
        }
        if token != Token::Identifier {
            return Err(syntax(format!("found '{literal}', expected: identifier")));
        }
        validate_key(literal)?;
        let (next, _) = self.lookahead(Context::Values);
        if operator.is_none() && (next == Token::EndOfString || next == Token::Comma) {
            operator = Some(Operator::Exists);
        }
        Ok((literal, operator))
    }

    fn parse_operator(&mut self) -> Result<Operator, SelectorError> {
        let (token, literal) = self.consume(Context::KeyAndOperator);
        Ok(match token {
            Token::In => Operator::In,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::GreaterThan => Operator::GreaterThan,
            Token::LessThan => Operator::LessThan,
            Token::NotIn => Operator::NotIn,
            Token::NotEquals => Operator::NotEquals,
            _ => {
                return Err(syntax(format!(
                    "found '{literal}', expected: in, notin, =, ==, !=, gt, lt"
                )));
            }
        })
    }

    /// Reads `(a,b,...)`; empty entries (`()`, `(,a)`, `(a,,b)`) stand for
    /// the empty value.
    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let (token, literal) = self.consume(Context::Values);
        if token != Token::OpenPar {
            return Err(syntax(format!("found '{literal}' expected: '('")));
        }
        let (token, literal) = self.lookahead(Context::Values);
        match token {
            Token::Identifier | Token::Comma => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values).0 != Token::ClosedPar {
                    return Err(syntax(format!("found '{literal}', expected: ')'")));
                }
                Ok(values.into_iter().collect())
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            _ => Err(syntax(format!(
                "found '{literal}', expected: ',', ')' or identifier"
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        let mut values = BTreeSet::new();
        loop {
            let (token, literal) = self.consume(Context::Values);
            match token {
                Token::Identifier => {
                    values.insert(literal.to_string());
                    let (next, literal) = self.lookahead(Context::Values);
                    match next {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        _ => {
                            return Err(syntax(format!("found '{literal}', expected: ',' or ')'")));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.insert(String::new()); // "(,"
                    }
                    match self.lookahead(Context::Values).0 {
                        Token::ClosedPar => {
                            values.insert(String::new()); // ",)"
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            values.insert(String::new()); // ",,"
                        }
                        _ => {}
                    }
                }
                _ => {
                    return Err(syntax(format!(
                        "found '{literal}', expected: ',', or identifier"
                    )));
                }
            }
        }
    }

    /// Reads the one value after `=`, `==`, `!=`, `>` or `<`; nothing
    /// before `,` or the end is the empty value.
    fn parse_exact_value(&mut self) -> Result<Vec<String>, SelectorError> {
        let (next, _) = self.lookahead(Context::Values);
        if next == Token::EndOfString || next == Token::Comma {
            return Ok(vec![String::new()]);
        }
        let (token, literal) = self.consume(Context::Values);
        if token == Token::Identifier {
            Ok(vec![literal.to_string()])
        } else {
            Err(syntax(format!("found '{literal}', expected: identifier")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A selector, a set of (label or field, value) pairs, and whether it matches.
    type MatchCase = (&'static str, &'static [(&'static str, &'static str)], bool);
    use metav1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|v| v.to_string()).collect()
    }

    #[test]
    fn valid_selectors_parse_to_their_canonical_form() {
        let cases = [
            ("", ""),
            ("   \t ", ""),
            ("x=a", "x=a"),
            ("x==a", "x==a"),
            ("x!=a", "x!=a"),
            (" x = a , y != b ", "x=a,y!=b"),
            ("\tx\n=\ra", "x=a"),
            ("x=", "x="),
            ("x=,y", "x=,y"),
            ("x in (b,a,a)", "x in (a,b)"),
            ("x notin(a)", "x notin (a)"),
            ("x in ()", "x in ()"),
            ("x in (,a)", "x in (,a)"),
            ("x in (a,)", "x in (,a)"),
            ("x in (a,,b)", "x in (,a,b)"),
            (
                "x in (foo,,baz),y,z notin ()",
                "x in (,baz,foo),y,z notin ()",
            ),
            ("x", "x"),
            ("!x", "!x"),
            ("! x", "!x"),
            ("z,!y,x=1", "x=1,!y,z"),
            ("x=b,x=a", "x=b,x=a"),
            ("example.com/app=web", "example.com/app=web"),
            ("x>1", "x>1"),
            ("x<10", "x<10"),
            ("in in (in),notin=notin", "in in (in),notin=notin"),
            ("x in (notin)", "x in (notin)"),
            ("a.b-c_d=A.b-C_9", "a.b-c_d=A.b-C_9"),
        ];
        for (input, canonical) in cases {
            let selector = parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(selector.to_string(), canonical, "input {input:?}");
            assert_eq!(
                parse(canonical).unwrap(),
                selector,
                "reparse of {canonical:?}"
            );
        }
    }

    #[test]
    fn malformed_selectors_fail_with_upstreams_messages() {
        let cases = [
            (
                ",",
                "found ',', expected: !, identifier, or 'end of string'",
            ),
            (
                ")",
                "found ')', expected: !, identifier, or 'end of string'",
            ),
            ("x=a,", "found '', expected: identifier after ','"),
            ("x=a,,y=b", "found ',', expected: identifier after ','"),
            ("x=a b", "found 'b', expected: ',' or 'end of string'"),
            ("x=a)", "found ')', expected: ',' or 'end of string'"),
            ("!x=a", "found '=', expected: ',' or 'end of string'"),
            (
                "x===a",
                "unable to parse requirement: found '=', expected: identifier",
            ),
            (
                "x y",
                "unable to parse requirement: found 'y', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x)",
                "unable to parse requirement: found ')', expected: in, notin, =, ==, !=, gt, lt",
            ),
            (
                "x in a",
                "unable to parse requirement: found 'a' expected: '('",
            ),
            (
                "x in",
                "unable to parse requirement: found '' expected: '('",
            ),
            (
                "x in (a",
                "unable to parse requirement: found '', expected: ',' or ')'",
            ),
            (
                "x in (a b)",
                "unable to parse requirement: found 'b', expected: ',' or ')'",
            ),
            (
                "x in (",
                "unable to parse requirement: found '', expected: ',', ')' or identifier",
            ),
            (
                "x in (=)",
                "unable to parse requirement: found '=', expected: ',', ')' or identifier",
            ),
            (
                "x in (a,=)",
                "unable to parse requirement: found '=', expected: ',', or identifier",
            ),
            (
                "x in (a,",
                "unable to parse requirement: found '', expected: ',', or identifier",
            ),
            (
                "!",
                "unable to parse requirement: found '', expected: identifier",
            ),
            (
                "!!x",
                "unable to parse requirement: found '!', expected: identifier",
            ),
            (
                "x=(a)",
                "unable to parse requirement: found '(', expected: identifier",
            ),
            (
                "x!=!",
                "unable to parse requirement: found '!', expected: identifier",
            ),
        ];
        for (input, message) in cases {
            let error = parse(input).expect_err(input);
            assert!(
                matches!(error, SelectorError::Syntax(_)),
                "{input:?}: {error:?}"
            );
            assert_eq!(error.to_string(), message, "input {input:?}");
        }
    }

    #[test]
    fn invalid_keys_and_values_are_rejected_with_upstreams_reasons() {
        let long = "a".repeat(64);
        let cases: Vec<(String, &str)> = vec![
            (
                "-x=a".into(),
                "name part must consist of alphanumeric characters",
            ),
            (
                "x-=a".into(),
                "name part must consist of alphanumeric characters",
            ),
            (
                "é=a".into(),
                "name part must consist of alphanumeric characters",
            ),
            (
                "a/b/c".into(),
                "a valid label key must consist of alphanumeric characters",
            ),
            ("/x".into(), "prefix part must be non-empty"),
            (
                "Example.com/x".into(),
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            (
                "a..b/x".into(),
                "prefix part a lowercase RFC 1123 subdomain",
            ),
            (
                "x/".into(),
                "name part must be non-empty; name part must consist",
            ),
            (
                format!("{long}=a"),
                "name part must be no more than 63 characters",
            ),
            (
                format!("{}/x", "a".repeat(254)),
                "prefix part must be no more than 253 characters",
            ),
            ("x\0=a".into(), "name part must consist"),
        ];
        for (input, reason) in &cases {
            match parse(input) {
                Err(SelectorError::InvalidKey { reason: got, .. }) => {
                    assert!(got.starts_with(reason), "{input:?}: {got}")
                }
                other => panic!("{input:?}: expected an invalid key, got {other:?}"),
            }
        }
        let cases: Vec<(String, &str)> = vec![
            (
                "x=-a".into(),
                "a valid label must be an empty string or consist of",
            ),
            (
                "x in (a,b_)".into(),
                "a valid label must be an empty string or consist of",
            ),
            (
                "x=a/b".into(),
                "a valid label must be an empty string or consist of",
            ),
            (format!("x={long}"), "must be no more than 63 characters"),
            (
                "x>a".into(),
                "for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "x<".into(),
                "for 'Gt', 'Lt' operators, the value must be an integer",
            ),
            (
                "x>-1".into(),
                "a valid label must be an empty string or consist of",
            ),
            (
                "x>99999999999999999999".into(),
                "for 'Gt', 'Lt' operators, the value must be an",
            ),
        ];
        for (input, reason) in &cases {
            match parse(input) {
                Err(SelectorError::InvalidValue { reason: got, .. }) => {
                    assert!(got.starts_with(reason), "{input:?}: {got}")
                }
                other => panic!("{input:?}: expected an invalid value, got {other:?}"),
            }
        }
    }

    #[test]
    fn errors_name_the_offending_key_and_value() {
        assert_eq!(
            parse("x=a b=c").unwrap_err().to_string(),
            "found 'b', expected: ',' or 'end of string'"
        );
        assert_eq!(
            parse("x=-a").unwrap_err().to_string(),
            "invalid label value \"-a\" for key \"x\": a valid label must be an empty string or \
             consist of alphanumeric characters, '-', '_' or '.', and must start and end with an \
             alphanumeric character (e.g. 'MyValue', or 'my_value', or '12345', regex used for \
             validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"
        );
        assert_eq!(
            parse("/x").unwrap_err().to_string(),
            "invalid label key \"/x\": prefix part must be non-empty"
        );
    }

    #[test]
    fn selectors_match_label_sets_like_upstream() {
        let cases: &[MatchCase] = &[
            ("", &[], true),
            ("", &[("a", "b")], true),
            ("x=a", &[("x", "a")], true),
            ("x=a", &[("x", "b")], false),
            ("x=a", &[], false),
            ("x==a", &[("x", "a")], true),
            ("x=", &[("x", "")], true),
            ("x=", &[], false),
            ("x!=a", &[], true),
            ("x!=a", &[("x", "a")], false),
            ("x!=a", &[("x", "b")], true),
            ("x in (a,b)", &[("x", "b")], true),
            ("x in (a,b)", &[("x", "c")], false),
            ("x in (a,b)", &[], false),
            ("x in ()", &[("x", "")], true),
            ("x notin (a,b)", &[], true),
            ("x notin (a,b)", &[("x", "c")], true),
            ("x notin (a,b)", &[("x", "a")], false),
            ("x", &[("x", "")], true),
            ("x", &[("y", "")], false),
            ("!x", &[], true),
            ("!x", &[("x", "")], false),
            ("x>1", &[("x", "2")], true),
            ("x>1", &[("x", "1")], false),
            ("x>1", &[("x", "two")], false),
            ("x>1", &[], false),
            ("x<1", &[("x", "0")], true),
            ("x<1", &[("x", "-5")], true),
            ("x<1", &[("x", "1")], false),
            ("x=a,y=b", &[("x", "a"), ("y", "b")], true),
            ("x=a,y=b", &[("x", "a")], false),
            ("x=a,x=b", &[("x", "a")], false),
            (
                "app=web,!canary,tier in (fe,be)",
                &[("app", "web"), ("tier", "be")],
                true,
            ),
        ];
        for (selector, set, expected) in cases {
            let parsed = parse(selector).unwrap();
            assert_eq!(
                parsed.matches(&labels(set)),
                *expected,
                "{selector:?} on {set:?}"
            );
        }
    }

    #[test]
    fn selectors_match_json_label_maps_and_hash_maps() {
        let json = serde_json::json!({"app": "web", "replicas": 3});
        let map = json.as_object().unwrap();
        assert!(parse("app=web").unwrap().matches_labels(map));
        assert!(
            !parse("replicas").unwrap().matches_labels(map),
            "non-string values are absent"
        );
        let hash: HashMap<String, String> = labels(&[("app", "web")]).into_iter().collect();
        assert!(parse("app in (web)").unwrap().matches_labels(&hash));
    }

    #[test]
    fn a_missing_typed_selector_matches_nothing_and_an_empty_one_everything() {
        let nothing = from_optional_label_selector(None).unwrap();
        assert!(nothing.matches_nothing());
        assert!(!nothing.is_empty());
        assert!(!nothing.matches(&labels(&[])));
        assert!(!nothing.matches(&labels(&[("a", "b")])));
        assert_eq!(nothing.to_string(), "");
        assert!(nothing
            .clone()
            .with_requirement(Requirement::new("a", Operator::Exists, vec![]).unwrap())
            .matches_nothing());

        let empty_forms = [
            metav1::LabelSelector::default(),
            metav1::LabelSelector {
                match_labels: Some(BTreeMap::new()),
                match_expressions: Some(Vec::new()),
            },
        ];
        for typed in &empty_forms {
            for selector in [
                from_label_selector(typed).unwrap(),
                from_optional_label_selector(Some(typed)).unwrap(),
            ] {
                assert!(selector.is_empty());
                assert!(!selector.matches_nothing());
                assert!(selector.matches(&labels(&[])));
                assert!(selector.matches(&labels(&[("a", "b")])));
                assert_eq!(selector, LabelSelector::everything());
            }
        }
    }

    fn expression(key: &str, operator: &str, values: Option<&[&str]>) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator: operator.to_string(),
            values: values.map(strings),
        }
    }

    #[test]
    fn typed_selectors_convert_like_label_selector_as_selector() {
        let typed = metav1::LabelSelector {
            match_labels: Some(labels(&[("e", "1"), ("a", "b")])),
            match_expressions: Some(vec![
                expression("c", "In", Some(&["y", "x", "x"])),
                expression("d", "DoesNotExist", None),
                expression("b", "Exists", Some(&[])),
                expression("a", "NotIn", Some(&["z"])),
            ]),
        };
        let selector = from_label_selector(&typed).unwrap();
        assert_eq!(selector.to_string(), "a=b,a notin (z),b,c in (x,y),!d,e=1");
        assert!(selector.matches(&labels(&[("a", "b"), ("b", ""), ("c", "x"), ("e", "1")])));
        assert!(!selector.matches(&labels(&[("a", "b"), ("b", ""), ("c", "x")])));
        assert_eq!(parse(&selector.to_string()).unwrap(), selector);
    }

    #[test]
    fn invalid_typed_selectors_are_rejected() {
        let cases: Vec<(metav1::LabelSelector, &str)> = vec![
            (
                metav1::LabelSelector {
                    match_expressions: Some(vec![expression("a", "in", Some(&["x"]))]),
                    ..Default::default()
                },
                "\"in\" is not a valid label selector operator",
            ),
            (
                metav1::LabelSelector {
                    match_expressions: Some(vec![expression("a", "Gt", Some(&["1"]))]),
                    ..Default::default()
                },
                "\"Gt\" is not a valid label selector operator",
            ),
            (
                metav1::LabelSelector {
                    match_expressions: Some(vec![expression("a", "In", None)]),
                    ..Default::default()
                },
                "invalid values for label key \"a\": for 'in', 'notin' operators, values set \
                 can't be empty",
            ),
            (
                metav1::LabelSelector {
                    match_expressions: Some(vec![expression("a", "Exists", Some(&["x"]))]),
                    ..Default::default()
                },
                "invalid values for label key \"a\": values set must be empty for exists and \
                 does not exist",
            ),
            (
                metav1::LabelSelector {
                    match_labels: Some(labels(&[("a", "not valid")])),
                    ..Default::default()
                },
                "invalid label value \"not valid\" for key \"a\"",
            ),
            (
                metav1::LabelSelector {
                    match_labels: Some(labels(&[("", "x")])),
                    ..Default::default()
                },
                "invalid label key \"\": name part must be non-empty",
            ),
        ];
        for (typed, message) in cases {
            let error = from_label_selector(&typed).unwrap_err().to_string();
            assert!(error.starts_with(message), "{typed:?}: {error}");
        }
    }

    #[test]
    fn requirements_check_their_value_counts() {
        let cases: &[(Operator, &[&str], bool)] = &[
            (Operator::Equals, &["a"], true),
            (Operator::Equals, &[], false),
            (Operator::Equals, &["a", "a"], false),
            (Operator::NotEquals, &["a", "b"], false),
            (Operator::In, &[], false),
            (Operator::In, &["a", "a"], true),
            (Operator::Exists, &[], true),
            (Operator::DoesNotExist, &[""], false),
            (Operator::GreaterThan, &["1", "2"], false),
            (Operator::LessThan, &["7"], true),
        ];
        for (operator, values, ok) in cases {
            let result = Requirement::new("k", *operator, strings(values));
            assert_eq!(result.is_ok(), *ok, "{operator:?} {values:?}: {result:?}");
        }
        let requirement = Requirement::new("k", Operator::In, strings(&["b", "a", "b"])).unwrap();
        assert_eq!(requirement.values(), ["a", "b"]);
        assert_eq!(requirement.key(), "k");
        assert_eq!(requirement.operator().as_str(), "in");
    }

    #[test]
    fn selectors_built_from_sets_and_requirements_sort_by_key() {
        let set = labels(&[("b", "2"), ("a", "1")]);
        assert_eq!(
            LabelSelector::from_set(&set).unwrap().to_string(),
            "a=1,b=2"
        );
        assert!(LabelSelector::from_set(&BTreeMap::new())
            .unwrap()
            .is_empty());
        assert!(LabelSelector::from_set(&labels(&[("a", "-")])).is_err());
        let selector = LabelSelector::everything()
            .with_requirement(Requirement::new("z", Operator::Exists, vec![]).unwrap())
            .with_requirement(Requirement::new("a", Operator::DoesNotExist, vec![]).unwrap())
            .with_requirement(Requirement::new("z", Operator::NotEquals, strings(&["q"])).unwrap());
        assert_eq!(selector.to_string(), "!a,z,z!=q");
        assert_eq!(selector.requirements().len(), 3);
        assert_eq!("!a,z,z!=q".parse::<LabelSelector>().unwrap(), selector);
    }

    #[test]
    fn exact_matches_are_reported_for_single_value_equality() {
        let cases = [
            ("x=a", "x", Some("a")),
            ("x==a", "x", Some("a")),
            ("x in (a)", "x", Some("a")),
            ("x in (a,b)", "x", None),
            ("x!=a", "x", None),
            ("x", "x", None),
            ("y=b,x=a", "x", Some("a")),
            ("x=a", "y", None),
        ];
        for (selector, key, expected) in cases {
            assert_eq!(
                parse(selector).unwrap().requires_exact_match(key),
                expected,
                "{selector}"
            );
        }
    }

    /// A small deterministic generator, so the garbage test needs no crate.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
    }

    #[test]
    fn garbage_input_never_panics_and_accepted_input_round_trips() {
        const ALPHABET: &[&str] = &[
            "a",
            "b",
            "x",
            "in",
            "notin",
            " ",
            "\t",
            "=",
            "==",
            "!",
            "!=",
            "(",
            ")",
            ",",
            ">",
            "<",
            "1",
            "-",
            "_",
            ".",
            "/",
            "é",
            "\0",
            "\\",
            "example.com/",
            "Z9",
        ];
        let mut rng = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut accepted = 0;
        for _ in 0..20_000 {
            let len = (rng.next() % 12) as usize;
            let input: String = (0..len)
                .map(|_| ALPHABET[(rng.next() % ALPHABET.len() as u64) as usize])
                .collect();
            if let Ok(selector) = parse(&input) {
                accepted += 1;
                let canonical = selector.to_string();
                let reparsed = parse(&canonical)
                    .unwrap_or_else(|e| panic!("{input:?} -> {canonical:?} does not parse: {e}"));
                assert_eq!(reparsed, selector, "{input:?} -> {canonical:?}");
                let _ = selector.matches(&labels(&[("a", "b"), ("x", "1")]));
            }
        }
        assert!(accepted > 100, "only {accepted} garbage inputs parsed");
    }
}
