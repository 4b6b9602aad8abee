//! The kubectl string form of a label selector, as in `kubectl get pods -l ...` and
//! `GET /api/v1/namespaces/{ns}/pods?selector=...`: comma-separated requirements, each one of
//!
//! - `key=value`, `key==value` (equality; the value may be empty), `key!=value`;
//! - `key in (a,b)`, `key notin (a, b)` (sets; an empty place in the list, as in `(a,)` or
//!   `()`, is the empty value, and repeated values count once);
//! - `key` (the label exists), `!key` (it does not).
//!
//! This is apimachinery's `labels.Parse`, checked against its own test cases
//! (`tests/vectors.rs`): `in` and `notin` are operators only where an operator goes, so a key or
//! value may be named `in`; whitespace around tokens is ignored. Parsing checks keys and values
//! too, so what parses is a valid selector; [`fmt::Display`] writes it back as apimachinery does,
//! requirements ordered by key and set values sorted.

use std::fmt;
use std::str::FromStr;

use super::{LabelSelector, LabelSelectorRequirement, SelectorOperator};
use crate::label::{validate_label_key, validate_label_value, LabelError};

/// A selector string that does not parse, quoted whole, with what to write instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("selector {selector:?}: {problem}")]
pub struct SelectorError {
    pub selector: String,
    #[source]
    pub problem: SelectorProblem,
}

/// What is wrong inside a selector string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorProblem {
    #[error("expected a label key but found {found}: write requirements such as app=web, tier in (a,b), legacy or !legacy")]
    MissingKey { found: String },
    #[error("empty requirement: remove the extra ','")]
    EmptyRequirement,
    #[error("{operator:?} needs its values in parentheses, e.g. {key} {operator} (a,b)")]
    MissingParenthesis { key: String, operator: &'static str },
    #[error(
        "the values of {key:?} are not closed: end the list with ')', e.g. {key} {operator} (a,b)"
    )]
    UnclosedValues { key: String, operator: &'static str },
    #[error("expected a value in the list of {key:?} but found {found}: separate values with ',', e.g. {key} {operator} (a,b)")]
    MissingValue {
        key: String,
        operator: &'static str,
        found: String,
    },
    #[error("unexpected {found} after {after:?}: separate requirements with ',', e.g. app=web,tier in (a,b)")]
    Unexpected { found: String, after: String },
    #[error("operator {0:?} only works in node affinity: label selectors take =, ==, !=, in, notin, key (exists) and !key (does not exist)")]
    NodeOnlyOperator(&'static str),
    #[error(transparent)]
    Label(#[from] LabelError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token<'a> {
    Word(&'a str),
    Not,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    Open,
    Close,
    Comma,
    Greater,
    Less,
}

impl<'a> Token<'a> {
    /// The token as a key or value: `in` and `notin` are operators only after a key, so
    /// `notin=in` is the key `notin` with the value `in`, as in Kubernetes.
    fn word(&self) -> Option<&'a str> {
        match self {
            Token::Word(word) => Some(word),
            Token::In => Some("in"),
            Token::NotIn => Some("notin"),
            _ => None,
        }
    }

    /// How the token reads in an error message.
    fn describe(&self) -> String {
        match self {
            Token::Word(w) => format!("{w:?}"),
            Token::Not => "'!'".into(),
            Token::Equals => "'='".into(),
            Token::DoubleEquals => "'=='".into(),
            Token::NotEquals => "'!='".into(),
            Token::In => "\"in\"".into(),
            Token::NotIn => "\"notin\"".into(),
            Token::Open => "'('".into(),
            Token::Close => "')'".into(),
            Token::Comma => "','".into(),
            Token::Greater => "'>'".into(),
            Token::Less => "'<'".into(),
        }
    }
}

fn describe(token: Option<&Token>) -> String {
    token.map_or_else(|| "the end".to_string(), Token::describe)
}

/// Splits a selector into tokens. `in` and `notin` become keyword tokens here; the parser reads
/// them as words where a key or value goes ([`Token::word`]).
fn tokens(text: &str) -> Vec<Token<'_>> {
    const SPECIAL: &[char] = &['!', '=', '(', ')', ',', '<', '>'];
    let mut out = Vec::new();
    let mut rest = text.trim_start();
    while let Some(c) = rest.chars().next() {
        let (token, len) = match c {
            '!' if rest.starts_with("!=") => (Token::NotEquals, 2),
            '!' => (Token::Not, 1),
            '=' if rest.starts_with("==") => (Token::DoubleEquals, 2),
            '=' => (Token::Equals, 1),
            '(' => (Token::Open, 1),
            ')' => (Token::Close, 1),
            ',' => (Token::Comma, 1),
            '>' => (Token::Greater, 1),
            '<' => (Token::Less, 1),
            _ => {
                let len = rest
                    .find(|c: char| c.is_whitespace() || SPECIAL.contains(&c))
                    .unwrap_or(rest.len());
                let word = &rest[..len];
                let token = match word {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Word(word),
                };
                (token, len)
            }
        };
        out.push(token);
        rest = rest[len..].trim_start();
    }
    out
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    at: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&Token<'a>> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token<'a>> {
        let token = self.tokens.get(self.at).cloned();
        self.at += 1;
        token
    }

    fn requirement(&mut self) -> Result<Parsed, SelectorProblem> {
        if self.peek() == Some(&Token::Not) {
            self.at += 1;
            let key = self.key()?;
            return Ok(Parsed::Expression(LabelSelectorRequirement::new(
                key,
                SelectorOperator::DoesNotExist,
                Vec::new(),
            )));
        }
        let key = self.key()?;
        let parsed = match self.peek() {
            None | Some(Token::Comma) => Parsed::Expression(LabelSelectorRequirement::new(
                key,
                SelectorOperator::Exists,
                Vec::new(),
            )),
            Some(Token::Equals | Token::DoubleEquals) => {
                self.at += 1;
                Parsed::Equals(key, self.single_value()?)
            }
            Some(Token::NotEquals) => {
                self.at += 1;
                let value = self.single_value()?;
                Parsed::Expression(LabelSelectorRequirement::new(
                    key,
                    SelectorOperator::NotIn,
                    vec![value],
                ))
            }
            Some(Token::In) => {
                self.at += 1;
                let values = self.value_list(&key, "in")?;
                Parsed::Expression(LabelSelectorRequirement::new(
                    key,
                    SelectorOperator::In,
                    values,
                ))
            }
            Some(Token::NotIn) => {
                self.at += 1;
                let values = self.value_list(&key, "notin")?;
                Parsed::Expression(LabelSelectorRequirement::new(
                    key,
                    SelectorOperator::NotIn,
                    values,
                ))
            }
            Some(Token::Greater) => return Err(SelectorProblem::NodeOnlyOperator(">")),
            Some(Token::Less) => return Err(SelectorProblem::NodeOnlyOperator("<")),
            Some(other) => {
                return Err(SelectorProblem::Unexpected {
                    found: other.describe(),
                    after: key,
                })
            }
        };
        Ok(parsed)
    }

    fn key(&mut self) -> Result<String, SelectorProblem> {
        if let Some(key) = self.peek().and_then(Token::word) {
            self.at += 1;
            validate_label_key(key)?;
            return Ok(key.to_string());
        }
        match self.peek() {
            Some(Token::Comma) => Err(SelectorProblem::EmptyRequirement),
            other => Err(SelectorProblem::MissingKey {
                found: describe(other),
            }),
        }
    }

    /// The value after `=`, `==` or `!=`; nothing before a ',' or the end means the empty value.
    fn single_value(&mut self) -> Result<String, SelectorProblem> {
        let value = match self.peek().and_then(Token::word) {
            Some(word) => {
                self.at += 1;
                word.to_string()
            }
            None => String::new(),
        };
        validate_label_value(&value)?;
        Ok(value)
    }

    /// The set after `in` or `notin`: `(a,b)`. As in Kubernetes, a place in the list with no value
    /// (`()`, `(a,)`, `(,a)`, `(a,,b)`) is the empty value, and the set is sorted and without
    /// repeats.
    fn value_list(
        &mut self,
        key: &str,
        operator: &'static str,
    ) -> Result<Vec<String>, SelectorProblem> {
        if self.next() != Some(Token::Open) {
            return Err(SelectorProblem::MissingParenthesis {
                key: key.to_string(),
                operator,
            });
        }
        let mut values = Vec::new();
        loop {
            let value = match self.peek().and_then(Token::word) {
                Some(word) => {
                    self.at += 1;
                    word
                }
                None => "",
            };
            validate_label_value(value)?;
            values.push(value.to_string());
            match self.next() {
                Some(Token::Comma) => continue,
                Some(Token::Close) => break,
                None | Some(Token::Word(_) | Token::In | Token::NotIn) => {
                    return Err(SelectorProblem::UnclosedValues {
                        key: key.to_string(),
                        operator,
                    })
                }
                Some(other) => {
                    return Err(SelectorProblem::MissingValue {
                        key: key.to_string(),
                        operator,
                        found: other.describe(),
                    })
                }
            }
        }
        values.sort_unstable();
        values.dedup();
        Ok(values)
    }
}

enum Parsed {
    Equals(String, String),
    Expression(LabelSelectorRequirement),
}

impl FromStr for LabelSelector {
    type Err = SelectorError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |problem| SelectorError {
            selector: text.to_string(),
            problem,
        };
        let mut parser = Parser {
            tokens: tokens(text),
            at: 0,
        };
        let mut selector = LabelSelector::default();
        if parser.tokens.is_empty() {
            return Ok(selector);
        }
        loop {
            match parser.requirement().map_err(fail)? {
                Parsed::Equals(key, value) => match selector.match_labels.get(&key) {
                    // `app=a,app=b` matches nothing; a second matchLabels entry would overwrite
                    // the first and match more, so the second becomes an expression.
                    Some(existing) if *existing != value => {
                        selector
                            .match_expressions
                            .push(LabelSelectorRequirement::new(
                                key,
                                SelectorOperator::In,
                                vec![value],
                            ))
                    }
                    _ => {
                        selector.match_labels.insert(key, value);
                    }
                },
                Parsed::Expression(requirement) => selector.match_expressions.push(requirement),
            }
            match parser.next() {
                None => return Ok(selector),
                Some(Token::Comma) => {
                    if parser.peek().is_none() {
                        return Err(fail(SelectorProblem::EmptyRequirement));
                    }
                }
                Some(other) => {
                    let after = parser.tokens[..parser.at - 1]
                        .iter()
                        .rev()
                        .find_map(|t| match t {
                            Token::Word(w) => Some(w.to_string()),
                            _ => None,
                        })
                        .unwrap_or_default();
                    return Err(fail(SelectorProblem::Unexpected {
                        found: other.describe(),
                        after,
                    }));
                }
            }
        }
    }
}

impl fmt::Display for LabelSelectorRequirement {
    /// The kubectl form: `key in (a,b)`, `key notin (a,b)`, `key!=a`, `key`, `!key`; values
    /// sorted and each once, as apimachinery writes a set.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key = &self.key;
        let mut values: Vec<&str> = self.values.iter().map(String::as_str).collect();
        values.sort_unstable();
        values.dedup();
        let values = values.join(",");
        match self.operator {
            SelectorOperator::In => write!(f, "{key} in ({values})"),
            SelectorOperator::NotIn if self.values.len() == 1 => write!(f, "{key}!={values}"),
            SelectorOperator::NotIn => write!(f, "{key} notin ({values})"),
            SelectorOperator::Exists => write!(f, "{key}"),
            SelectorOperator::DoesNotExist => write!(f, "!{key}"),
        }
    }
}

impl fmt::Display for LabelSelector {
    /// The kubectl form, ordered by key as apimachinery orders it (a key's `matchLabels` entry
    /// before its expressions): `app=web,!legacy,tier in (a,b)`. The empty selector (everything)
    /// is the empty string, which parses back to it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let labels = self
            .match_labels
            .iter()
            .map(|(k, v)| (k.as_str(), format!("{k}={v}")));
        let expressions = self
            .match_expressions
            .iter()
            .map(|r| (r.key.as_str(), r.to_string()));
        let mut requirements: Vec<(&str, String)> = labels.chain(expressions).collect();
        // Stable: a key's expressions keep their order.
        requirements.sort_by(|a, b| a.0.cmp(b.0));
        let texts: Vec<String> = requirements.into_iter().map(|(_, text)| text).collect();
        f.write_str(&texts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn parse(text: &str) -> LabelSelector {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn error(text: &str) -> String {
        text.parse::<LabelSelector>().unwrap_err().to_string()
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_form_parses() {
        let selector =
            parse("app=web, tier in (a, b),zone notin (x),env!=prod,legacy,!canary,v==1");
        assert_eq!(selector.match_labels, labels(&[("app", "web"), ("v", "1")]));
        let ops: Vec<_> = selector
            .match_expressions
            .iter()
            .map(|r| (r.key.as_str(), r.operator, r.values.clone()))
            .collect();
        use SelectorOperator::*;
        assert_eq!(
            ops,
            vec![
                ("tier", In, vec!["a".to_string(), "b".to_string()]),
                ("zone", NotIn, vec!["x".to_string()]),
                ("env", NotIn, vec!["prod".to_string()]),
                ("legacy", Exists, vec![]),
                ("canary", DoesNotExist, vec![]),
            ]
        );
    }

    #[test]
    fn whitespace_is_tolerated() {
        assert_eq!(
            parse("  app = web ,  tier  in(a,b) , ! legacy "),
            parse("app=web,tier in (a,b),!legacy")
        );
        assert_eq!(parse(""), LabelSelector::everything());
        assert_eq!(parse("   "), LabelSelector::everything());
    }

    #[test]
    fn empty_values_after_equals() {
        let selector = parse("app=,b");
        assert_eq!(selector.match_labels, labels(&[("app", "")]));
        assert!(selector.matches(&labels(&[("app", ""), ("b", "1")])));
        assert!(!selector.matches(&labels(&[("app", "x"), ("b", "1")])));
    }

    #[test]
    fn repeated_equality_keeps_its_meaning() {
        let selector = parse("app=a,app=b");
        assert!(!selector.matches(&labels(&[("app", "a")])));
        assert!(!selector.matches(&labels(&[("app", "b")])));
        assert_eq!(parse("app=a,app=a").match_labels, labels(&[("app", "a")]));
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "",
            "app=web",
            "app=web,tier in (a,b)",
            "env!=prod",
            "zone notin (x,y)",
            "!canary,legacy",
            "app.kubernetes.io/name=db,example.com/tier in (a)",
        ] {
            let selector = parse(text);
            assert_eq!(selector.to_string(), text);
            assert_eq!(parse(&selector.to_string()), selector);
        }
        assert_eq!(
            parse("app==web , tier notin ( a )").to_string(),
            "app=web,tier!=a"
        );
    }

    #[test]
    fn in_and_notin_are_operators_only_after_a_key() {
        assert_eq!(parse("notin=in").match_labels, labels(&[("notin", "in")]));
        assert!(parse("notin=in").matches(&labels(&[("notin", "in")])));
        let set = parse("in in (x,notin, in)");
        assert_eq!(set.match_expressions[0].key, "in");
        assert_eq!(set.match_expressions[0].values, ["in", "notin", "x"]);
        assert_eq!(parse("in,!notin").to_string(), "in,!notin");
    }

    #[test]
    fn empty_places_in_a_set_are_the_empty_value() {
        let values = |text: &str| parse(text).match_expressions[0].values.clone();
        assert_eq!(values("x in ()"), [""]);
        assert_eq!(values("x in ( )"), [""]);
        assert_eq!(values("x in (abc,)"), ["", "abc"]);
        assert_eq!(values("x notin (, a)"), ["", "a"]);
        assert_eq!(values("x in (a,,a,,)"), ["", "a"]);
        assert_eq!(
            values("x in (b,a,b)"),
            ["a", "b"],
            "a set: sorted, once each"
        );
        assert!(parse("x in ()").matches(&labels(&[("x", "")])));
        assert!(!parse("x in ()").matches(&labels(&[("x", "a")])));
        assert_eq!(parse("x in (b,a)").to_string(), "x in (a,b)");
    }

    #[test]
    fn parsed_selectors_match() {
        let selector = parse("app=web,tier notin (a, b),!legacy");
        assert!(selector.matches(&labels(&[("app", "web")])));
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "c")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "a")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("legacy", "")])));
        assert!(!selector.matches(&labels(&[("app", "db")])));
    }

    #[test]
    fn errors_quote_the_selector_and_say_what_to_write() {
        assert!(error("tier in a,b")
            .contains("\"in\" needs its values in parentheses, e.g. tier in (a,b)"));
        assert!(error("tier in (a,b").contains("are not closed: end the list with ')'"));
        assert!(error("tier in (a b)").contains("are not closed"));
        assert!(error("tier in (a,=)")
            .contains("expected a value in the list of \"tier\" but found '='"));
        assert!(error("app=web,").contains("empty requirement: remove the extra ','"));
        assert!(error(",app=web").contains("empty requirement"));
        assert!(error("app=web,,tier").contains("empty requirement"));
        assert!(error("=web").contains("expected a label key but found '='"));
        assert!(error("app web").contains("unexpected \"web\" after \"app\""));
        assert!(error("app=web tier=a").contains("unexpected \"tier\" after \"web\""));
        assert!(error("replicas>3").contains("operator \">\" only works in node affinity"));
        assert!(error("!").contains("expected a label key but found the end"));
        assert!(error("app=we b").contains("separate requirements with ','"));
        assert!(error("Bad/Key/x=1").contains("more than one '/'"));
        assert!(error("app=web!").contains("unexpected '!'"));
        assert!(error("app=-web").contains("label value \"-web\" is not valid"));
        assert!(error("tier in (a,b_)").contains("label value \"b_\" is not valid"));
    }
}
