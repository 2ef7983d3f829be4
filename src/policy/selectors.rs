//! Label selectors — Kubernetes `LabelSelector` (matchLabels/matchExpressions) and the
//! subset of Calico's selector language flowlake evaluates — and how they are asked about a
//! workload the lake knows only from its flows.
//!
//! Invariant: a selector is answered per label set the workload was seen with; `Yes` or
//! `No` only when every set agrees and every key the selector reads is known. A key that no
//! pod of the cluster ever carried is *unknown*, not absent (the lake may simply not
//! record it), so any test on it is `Maybe`; a key other pods carry but this one does not
//! is absent. Namespaces are known by name only: `kubernetes.io/metadata.name` (and
//! Calico's `projectcalico.org/name`) are answered, any other namespace label is `Maybe`.
//!
//! Calico subset: `all()`, `global()`, `has(k)`, `k == 'v'`, `k != 'v'`, `k in {'a','b'}`,
//! `k not in {…}`, `!`, `&&`, `||`, parentheses; anything else is a parse error.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::model::{Inventory, LabelSets, Labels};
use super::tri::Tri;

/// Label keys that name a namespace.
pub const NAMESPACE_NAME_KEYS: [&str; 2] =
    ["kubernetes.io/metadata.name", "projectcalico.org/name"];

/// What a label lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// The label, with its value.
    Present(&'a str),
    /// Certainly not there.
    Absent,
    /// The lake cannot say.
    Unknown,
}

/// Something labels can be looked up on.
pub trait LabelView {
    /// The label `key`.
    fn get(&self, key: &str) -> Lookup<'_>;
}

/// One label set of a workload, with the cluster's known keys.
pub struct SetView<'a> {
    set: &'a Labels,
    inventory: &'a Inventory,
    cluster: &'a str,
    /// Keys known to be absent from pods although the lake never saw them (labels of
    /// network sets in the proposed policies).
    absent: &'a BTreeSet<String>,
}

impl LabelView for SetView<'_> {
    fn get(&self, key: &str) -> Lookup<'_> {
        match self.set.get(key) {
            Some(v) => Lookup::Present(v),
            None if self.inventory.cluster_has_key(self.cluster, key)
                || self.absent.contains(key) =>
            {
                Lookup::Absent
            }
            None => Lookup::Unknown,
        }
    }
}

/// A namespace, known by its name.
pub struct NamespaceView<'a>(pub &'a str);

impl LabelView for NamespaceView<'_> {
    fn get(&self, key: &str) -> Lookup<'_> {
        if NAMESPACE_NAME_KEYS.contains(&key) {
            Lookup::Present(self.0)
        } else {
            Lookup::Unknown
        }
    }
}

/// Plain labels, every key known (network sets from policy files, tests).
pub struct PlainView<'a>(pub &'a Labels);

impl LabelView for PlainView<'_> {
    fn get(&self, key: &str) -> Lookup<'_> {
        self.0
            .get(key)
            .map_or(Lookup::Absent, |v| Lookup::Present(v.as_str()))
    }
}

/// Evaluates `predicate` on every label set of workload `namespace/name` of `cluster`;
/// keys in `absent` count as absent even when the cluster never showed them.
pub fn on_workload(
    inventory: &Inventory,
    cluster: &str,
    (namespace, name): (&str, &str),
    absent: &BTreeSet<String>,
    predicate: impl Fn(&dyn LabelView) -> Tri,
) -> Tri {
    let Some(LabelSets { sets, overflowed }) = inventory.workload_labels(cluster, namespace, name)
    else {
        return Tri::Maybe;
    };
    let mut answers = sets.iter().map(|set| {
        predicate(&SetView {
            set,
            inventory,
            cluster,
            absent,
        })
    });
    let Some(first) = answers.next() else {
        return Tri::Maybe;
    };
    let agreed = answers.all(|a| a == first);
    if !agreed || *overflowed {
        return Tri::Maybe;
    }
    first
}

/// A Kubernetes `LabelSelector`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector {
    /// `matchLabels`.
    pub match_labels: BTreeMap<String, String>,
    /// `matchExpressions`: key, operator, values.
    pub match_expressions: Vec<(String, String, Vec<String>)>,
}

impl LabelSelector {
    /// Parses a `LabelSelector` object (`null`/absent selects everything).
    pub fn parse(value: Option<&Value>) -> Result<LabelSelector, String> {
        let mut selector = LabelSelector::default();
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(selector);
        };
        let object = value
            .as_object()
            .ok_or("a label selector must be an object")?;
        for key in object.keys() {
            if key != "matchLabels" && key != "matchExpressions" {
                return Err(format!("label selector field {key:?} is not supported"));
            }
        }
        if let Some(labels) = object.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v.as_str().ok_or("matchLabels values must be strings")?;
                selector.match_labels.insert(k.clone(), v.to_owned());
            }
        }
        if let Some(exprs) = object.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e["key"]
                    .as_str()
                    .ok_or("matchExpressions entry without key")?;
                let op = e["operator"]
                    .as_str()
                    .ok_or("matchExpressions entry without operator")?;
                if !matches!(op, "In" | "NotIn" | "Exists" | "DoesNotExist") {
                    return Err(format!("matchExpressions operator {op:?} is not supported"));
                }
                let values = e["values"]
                    .as_array()
                    .map(|vs| {
                        vs.iter()
                            .filter_map(|v| v.as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                selector
                    .match_expressions
                    .push((key.to_owned(), op.to_owned(), values));
            }
        }
        Ok(selector)
    }

    /// True when it selects everything (`{}`).
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    /// Does it select an object with these labels?
    pub fn matches(&self, view: &dyn LabelView) -> Tri {
        let labels = self.match_labels.iter().map(|(k, v)| match view.get(k) {
            Lookup::Present(have) => Tri::from_bool(have == v),
            Lookup::Absent => Tri::No,
            Lookup::Unknown => Tri::Maybe,
        });
        let exprs = self.match_expressions.iter().map(|(k, op, values)| {
            let found = view.get(k);
            let in_values = match found {
                Lookup::Present(have) => Tri::from_bool(values.iter().any(|v| v == have)),
                Lookup::Absent => Tri::No,
                Lookup::Unknown => Tri::Maybe,
            };
            let exists = match found {
                Lookup::Present(_) => Tri::Yes,
                Lookup::Absent => Tri::No,
                Lookup::Unknown => Tri::Maybe,
            };
            match op.as_str() {
                "In" => in_values,
                "NotIn" => in_values.not(),
                "Exists" => exists,
                _ => exists.not(),
            }
        });
        Tri::all(labels.chain(exprs).collect::<Vec<_>>())
    }
}

/// A parsed Calico selector expression.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CalicoSelector {
    /// `all()` (and `global()`, which only widens the namespace scope).
    All,
    /// `has(k)`.
    Has(String),
    /// `k == 'v'`.
    Eq(String, String),
    /// `k in {…}`.
    In(String, Vec<String>),
    /// `!e`.
    Not(Box<CalicoSelector>),
    /// `a && b`.
    And(Box<CalicoSelector>, Box<CalicoSelector>),
    /// `a || b`.
    Or(Box<CalicoSelector>, Box<CalicoSelector>),
}

impl CalicoSelector {
    /// Parses the subset described in the module documentation; empty text is `all()`.
    pub fn parse(text: &str) -> Result<CalicoSelector, String> {
        let mut parser = Parser {
            text,
            chars: text.char_indices().collect(),
            at: 0,
        };
        parser.skip_space();
        if parser.at >= parser.chars.len() {
            return Ok(CalicoSelector::All);
        }
        let expr = parser.or()?;
        parser.skip_space();
        if parser.at < parser.chars.len() {
            return Err(parser.error("unexpected text"));
        }
        Ok(expr)
    }

    /// Does it select an object with these labels?
    pub fn evaluate(&self, view: &dyn LabelView) -> Tri {
        match self {
            CalicoSelector::All => Tri::Yes,
            CalicoSelector::Has(k) => match view.get(k) {
                Lookup::Present(_) => Tri::Yes,
                Lookup::Absent => Tri::No,
                Lookup::Unknown => Tri::Maybe,
            },
            CalicoSelector::Eq(k, v) => match view.get(k) {
                Lookup::Present(have) => Tri::from_bool(have == v),
                Lookup::Absent => Tri::No,
                Lookup::Unknown => Tri::Maybe,
            },
            CalicoSelector::In(k, values) => match view.get(k) {
                Lookup::Present(have) => Tri::from_bool(values.iter().any(|v| v == have)),
                Lookup::Absent => Tri::No,
                Lookup::Unknown => Tri::Maybe,
            },
            CalicoSelector::Not(e) => e.evaluate(view).not(),
            CalicoSelector::And(a, b) => a.evaluate(view).and(b.evaluate(view)),
            CalicoSelector::Or(a, b) => a.evaluate(view).or(b.evaluate(view)),
        }
    }
}

struct Parser<'a> {
    text: &'a str,
    chars: Vec<(usize, char)>,
    at: usize,
}

impl Parser<'_> {
    fn error(&self, what: &str) -> String {
        let offset = self.chars.get(self.at).map_or(self.text.len(), |(i, _)| *i);
        format!("calico selector {:?}: {what} at byte {offset}", self.text)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).map(|(_, c)| *c)
    }

    fn skip_space(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.at += 1;
        }
    }

    fn eat(&mut self, token: &str) -> bool {
        self.skip_space();
        let n = token.chars().count();
        let matches = self.chars.get(self.at..self.at + n).is_some_and(|s| {
            s.iter()
                .map(|(_, c)| c)
                .eq(token.chars().collect::<Vec<_>>().iter())
        });
        if matches {
            self.at += n;
        }
        matches
    }

    fn or(&mut self) -> Result<CalicoSelector, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = CalicoSelector::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<CalicoSelector, String> {
        let mut left = self.unary()?;
        while self.eat("&&") {
            left = CalicoSelector::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<CalicoSelector, String> {
        if self.eat("!") {
            return Ok(CalicoSelector::Not(Box::new(self.unary()?)));
        }
        if self.eat("(") {
            let inner = self.or()?;
            if !self.eat(")") {
                return Err(self.error("expected )"));
            }
            return Ok(inner);
        }
        if self.eat("all()") || self.eat("global()") {
            return Ok(CalicoSelector::All);
        }
        if self.eat("has(") {
            let key = self.key()?;
            if !self.eat(")") {
                return Err(self.error("expected ) after has(key"));
            }
            return Ok(CalicoSelector::Has(key));
        }
        let key = self.key()?;
        if self.eat("==") {
            return Ok(CalicoSelector::Eq(key, self.string()?));
        }
        if self.eat("!=") {
            let value = self.string()?;
            return Ok(CalicoSelector::Not(Box::new(CalicoSelector::Eq(
                key, value,
            ))));
        }
        if self.eat("not") {
            if !self.eat("in") {
                return Err(self.error("expected `in` after `not`"));
            }
            let values = self.set()?;
            return Ok(CalicoSelector::Not(Box::new(CalicoSelector::In(
                key, values,
            ))));
        }
        if self.eat("in") {
            return Ok(CalicoSelector::In(key, self.set()?));
        }
        Err(self.error("expected ==, !=, in or not in"))
    }

    fn key(&mut self) -> Result<String, String> {
        self.skip_space();
        let start = self.at;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        {
            self.at += 1;
        }
        if self.at == start {
            return Err(self.error("expected a label key"));
        }
        Ok(self.chars[start..self.at].iter().map(|(_, c)| c).collect())
    }

    fn string(&mut self) -> Result<String, String> {
        self.skip_space();
        let Some(quote) = self.peek().filter(|c| *c == '\'' || *c == '"') else {
            return Err(self.error("expected a quoted value"));
        };
        self.at += 1;
        let start = self.at;
        while self.peek().is_some_and(|c| c != quote) {
            self.at += 1;
        }
        if self.peek().is_none() {
            return Err(self.error("unterminated string"));
        }
        let value = self.chars[start..self.at].iter().map(|(_, c)| c).collect();
        self.at += 1;
        Ok(value)
    }

    fn set(&mut self) -> Result<Vec<String>, String> {
        if !self.eat("{") {
            return Err(self.error("expected {"));
        }
        let mut values = Vec::new();
        if self.eat("}") {
            return Ok(values);
        }
        loop {
            values.push(self.string()?);
            if self.eat("}") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected , or }"));
            }
        }
    }
}

/// `key == 'value' && …` for a label set (Calico syntax); `all()` when empty.
pub fn calico_expression(labels: &Labels) -> String {
    if labels.is_empty() {
        return "all()".to_owned();
    }
    labels
        .iter()
        .map(|(k, v)| format!("{k} == '{v}'"))
        .collect::<Vec<_>>()
        .join(" && ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn calico_subset_parses_and_evaluates() -> Result<(), String> {
        let set = labels(&[("app", "web"), ("tier", "front")]);
        let view = PlainView(&set);
        for (text, want) in [
            ("", Tri::Yes),
            ("all()", Tri::Yes),
            ("app == 'web'", Tri::Yes),
            ("app != 'web'", Tri::No),
            ("has(tier) && app in {'db', 'web'}", Tri::Yes),
            ("app not in {'web'} || !has(tier)", Tri::No),
            ("(app == \"x\" || tier == 'front') && global()", Tri::Yes),
        ] {
            assert_eq!(CalicoSelector::parse(text)?.evaluate(&view), want, "{text}");
        }
        for bad in ["app =", "app == 'x", "has(app", "app ~ 'x'", "a == 'b' c"] {
            assert!(CalicoSelector::parse(bad).is_err(), "{bad}");
        }
        Ok(())
    }

    #[test]
    fn unknown_keys_are_uncertain_and_namespaces_known_by_name() -> Result<(), String> {
        let mut inventory = Inventory::default();
        let peer = super::super::model::Peer {
            kind: "pod".into(),
            namespace: Some("shop".into()),
            name: Some("web".into()),
        };
        inventory.add_labels("c", &peer, labels(&[("app", "web")]));
        let other = super::super::model::Peer {
            name: Some("db".into()),
            ..peer.clone()
        };
        inventory.add_labels("c", &other, labels(&[("app", "db"), ("tier", "data")]));
        let ask = |text: &str| -> Result<Tri, String> {
            let selector = CalicoSelector::parse(text)?;
            Ok(on_workload(
                &inventory,
                "c",
                ("shop", "web"),
                &BTreeSet::new(),
                |v| selector.evaluate(v),
            ))
        };
        assert_eq!(ask("app == 'web'")?, Tri::Yes);
        assert_eq!(
            ask("tier == 'data'")?,
            Tri::No,
            "tier is known in the cluster"
        );
        assert_eq!(ask("team == 'a'")?, Tri::Maybe, "no pod ever had `team`");
        assert_eq!(
            on_workload(&inventory, "c", ("shop", "ghost"), &BTreeSet::new(), |_| {
                Tri::Yes
            }),
            Tri::Maybe
        );
        let selector = LabelSelector::parse(Some(&serde_json::json!({
            "matchLabels": {"kubernetes.io/metadata.name": "shop"}
        })))?;
        assert_eq!(selector.matches(&NamespaceView("shop")), Tri::Yes);
        assert_eq!(selector.matches(&NamespaceView("kube-system")), Tri::No);
        let by_team = LabelSelector::parse(Some(&serde_json::json!({
            "matchExpressions": [{"key": "team", "operator": "Exists"}]
        })))?;
        assert_eq!(by_team.matches(&NamespaceView("shop")), Tri::Maybe);
        Ok(())
    }
}
