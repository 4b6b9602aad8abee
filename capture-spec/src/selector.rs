//! Kubernetes label selectors: which pods a capture targets (`spec.podSelector`).
//!
//! The JSON shape is Kubernetes' own `LabelSelector` (`matchLabels`, `matchExpressions`), so a
//! selector copied from a Deployment works unchanged, and so is the meaning: every `matchLabels`
//! pair and every expression must hold; an empty selector matches every pod; `NotIn` and
//! `DoesNotExist` match pods without the key. The kubectl string form (`app=web,tier in (a,b)`)
//! used by `?selector=` and the CLI is `FromStr`/`Display` on [`LabelSelector`], in `selector/syntax.rs`.

mod syntax;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

pub use syntax::{SelectorError, SelectorProblem};

use crate::label::{validate_label_key, validate_label_value};
use crate::validate::FieldError;

/// A Kubernetes label selector. The default (empty) selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub struct LabelSelector {
    /// Labels that must be present with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Further requirements, all of which must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry: `key operator values`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub struct LabelSelectorRequirement {
    /// The label key the requirement applies to.
    pub key: String,
    pub operator: SelectorOperator,
    /// One or more values for `In` and `NotIn`; none for `Exists` and `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// How a requirement compares a label; serialized exactly as Kubernetes writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "kube", derive(schemars::JsonSchema))]
pub enum SelectorOperator {
    /// The label is present and its value is one of `values`.
    In,
    /// The label is absent, or present with a value not in `values`.
    NotIn,
    /// The label is present, whatever its value.
    Exists,
    /// The label is absent.
    DoesNotExist,
}

impl SelectorOperator {
    /// Whether this operator compares against `values` (and so needs at least one).
    pub fn takes_values(self) -> bool {
        matches!(self, SelectorOperator::In | SelectorOperator::NotIn)
    }
}

impl fmt::Display for SelectorOperator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SelectorOperator::In => "In",
            SelectorOperator::NotIn => "NotIn",
            SelectorOperator::Exists => "Exists",
            SelectorOperator::DoesNotExist => "DoesNotExist",
        })
    }
}

impl LabelSelectorRequirement {
    pub fn new(key: impl Into<String>, operator: SelectorOperator, values: Vec<String>) -> Self {
        LabelSelectorRequirement {
            key: key.into(),
            operator,
            values,
        }
    }

    /// Whether a pod with `labels` satisfies this requirement.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            SelectorOperator::In => value.is_some_and(|v| self.values.contains(v)),
            SelectorOperator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            SelectorOperator::Exists => value.is_some(),
            SelectorOperator::DoesNotExist => value.is_none(),
        }
    }
}

impl LabelSelector {
    /// The selector that matches every pod.
    pub fn everything() -> Self {
        LabelSelector::default()
    }

    /// A selector requiring exactly these labels.
    pub fn from_labels<K: Into<String>, V: Into<String>>(
        labels: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        LabelSelector {
            match_labels: labels
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            match_expressions: Vec::new(),
        }
    }

    /// True when the selector has no requirement at all and so matches every pod.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Whether a pod with `labels` is selected. Validate the selector first: an `In` without
    /// values (which validation refuses) matches nothing here.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }

    /// Every problem with the selector, each located under `path` (such as `spec.podSelector`):
    /// invalid keys or values, `In`/`NotIn` without values, `Exists`/`DoesNotExist` with values.
    pub fn field_errors(&self, path: &str) -> Vec<FieldError> {
        let mut errors = label_map_errors(&self.match_labels, &format!("{path}.matchLabels"));
        for (i, requirement) in self.match_expressions.iter().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            if let Err(e) = validate_label_key(&requirement.key) {
                errors.push(FieldError::new(format!("{at}.key"), e.to_string()));
            }
            let op = requirement.operator;
            match (op.takes_values(), requirement.values.is_empty()) {
                (true, true) => errors.push(FieldError::new(
                    format!("{at}.values"),
                    format!("operator {op} needs at least one value: list them, e.g. \"values\": [\"a\", \"b\"]"),
                )),
                (false, false) => errors.push(FieldError::new(
                    format!("{at}.values"),
                    format!("operator {op} takes no values: remove values, or use In or NotIn to compare values"),
                )),
                _ => {}
            }
            for (j, value) in requirement.values.iter().enumerate() {
                if let Err(e) = validate_label_value(value) {
                    errors.push(FieldError::new(format!("{at}.values[{j}]"), e.to_string()));
                }
            }
        }
        errors
    }
}

/// Problems with a plain label map (`matchLabels`, `nodeSelector`), all reported at `path` with
/// the offending key or value named in the message.
pub fn label_map_errors(labels: &BTreeMap<String, String>, path: &str) -> Vec<FieldError> {
    labels
        .iter()
        .flat_map(|(key, value)| [validate_label_key(key), validate_label_value(value)])
        .filter_map(Result::err)
        .map(|e| FieldError::new(path, e.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn req(key: &str, op: SelectorOperator, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement::new(key, op, values.iter().map(|v| v.to_string()).collect())
    }

    #[test]
    fn empty_selector_matches_everything() {
        assert!(LabelSelector::everything().matches(&labels(&[])));
        assert!(LabelSelector::everything().matches(&labels(&[("app", "web")])));
    }

    #[test]
    fn match_labels_need_every_pair() {
        let selector = LabelSelector::from_labels([("app", "web"), ("tier", "front")]);
        assert!(selector.matches(&labels(&[("app", "web"), ("tier", "front"), ("x", "y")])));
        assert!(!selector.matches(&labels(&[("app", "web")])));
        assert!(!selector.matches(&labels(&[("app", "web"), ("tier", "back")])));
    }

    #[test]
    fn expressions_follow_kubernetes() {
        use SelectorOperator::*;
        let pod = labels(&[("app", "web"), ("tier", "a")]);
        let bare = labels(&[]);
        assert!(req("tier", In, &["a", "b"]).matches(&pod));
        assert!(!req("tier", In, &["b"]).matches(&pod));
        assert!(!req("tier", In, &["a"]).matches(&bare));
        assert!(!req("tier", NotIn, &["a"]).matches(&pod));
        assert!(req("tier", NotIn, &["b"]).matches(&pod));
        assert!(
            req("tier", NotIn, &["a"]).matches(&bare),
            "NotIn matches an absent key"
        );
        assert!(req("app", Exists, &[]).matches(&pod));
        assert!(!req("app", Exists, &[]).matches(&bare));
        assert!(req("legacy", DoesNotExist, &[]).matches(&pod));
        assert!(!req("app", DoesNotExist, &[]).matches(&pod));
        assert!(
            !req("tier", In, &[]).matches(&pod),
            "In without values matches nothing"
        );
        let both = LabelSelector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: vec![req("tier", NotIn, &["a"])],
        };
        assert!(!both.matches(&pod), "labels and expressions are AND'ed");
    }

    #[test]
    fn json_shape_is_kubernetes() {
        let json = r#"{"matchLabels":{"app":"web"},"matchExpressions":[{"key":"tier","operator":"NotIn","values":["a","b"]},{"key":"legacy","operator":"DoesNotExist"}]}"#;
        let selector: LabelSelector = serde_json::from_str(json).unwrap();
        assert_eq!(selector.match_labels, labels(&[("app", "web")]));
        assert_eq!(
            selector.match_expressions[0].operator,
            SelectorOperator::NotIn
        );
        assert_eq!(serde_json::to_string(&selector).unwrap(), json);
        for op in ["In", "NotIn", "Exists", "DoesNotExist"] {
            let text = format!(r#"{{"key":"k","operator":"{op}"}}"#);
            let r: LabelSelectorRequirement = serde_json::from_str(&text).unwrap();
            assert_eq!(r.operator.to_string(), op);
        }
        assert_eq!(
            serde_json::to_string(&LabelSelector::default()).unwrap(),
            "{}"
        );
        assert_eq!(
            serde_json::from_str::<LabelSelector>("{}").unwrap(),
            LabelSelector::default()
        );
        let typo = serde_json::from_str::<LabelSelector>(r#"{"matchlabels":{"a":"b"}}"#);
        assert!(typo
            .unwrap_err()
            .to_string()
            .contains("unknown field `matchlabels`"));
        assert!(
            serde_json::from_str::<LabelSelectorRequirement>(r#"{"key":"k","operator":"in"}"#)
                .is_err()
        );
    }

    #[test]
    fn field_errors_are_located() {
        use SelectorOperator::*;
        let selector = LabelSelector {
            match_labels: labels(&[("app", "web!")]),
            match_expressions: vec![
                req("tier", In, &[]),
                req("Bad Key", Exists, &["x"]),
                req("zone", NotIn, &["ok", "not ok"]),
            ],
        };
        let errors = selector.field_errors("spec.podSelector");
        let found: Vec<(&str, &str)> = errors
            .iter()
            .map(|e| (e.field.as_str(), e.message.as_str()))
            .collect();
        assert_eq!(found.len(), 5, "{found:?}");
        assert_eq!(found[0].0, "spec.podSelector.matchLabels");
        assert!(found[0].1.contains("label value \"web!\" is not valid"));
        assert_eq!(
            found[1],
            (
                "spec.podSelector.matchExpressions[0].values",
                "operator In needs at least one value: list them, e.g. \"values\": [\"a\", \"b\"]"
            )
        );
        assert_eq!(found[2].0, "spec.podSelector.matchExpressions[1].key");
        assert_eq!(found[3].0, "spec.podSelector.matchExpressions[1].values");
        assert!(found[3].1.contains("operator Exists takes no values"));
        assert_eq!(found[4].0, "spec.podSelector.matchExpressions[2].values[1]");
        assert!(LabelSelector::from_labels([("app", "web")])
            .field_errors("spec.podSelector")
            .is_empty());
    }
}
