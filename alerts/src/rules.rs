//! Alert rules: validated field by field (every problem answered at once), saved and deleted as
//! control events (`AlertRuleSaved` / `AlertRuleDeleted`), read back from `alert_rules`, and
//! typed ([`Rule`]) for the evaluator.

use nerve_projections::control::{ALERT_RULES, RuleRow};
use nerve_projections::scope;
use nerve_schemas::{AlertRuleDeleted, AlertRuleSaved, Envelope, subjects};

use crate::contract::SaveRule;
use crate::rule::{Aggregate, Kind, Metric, Op, Severity};
use crate::{AlertsError, Context, Problems, Recorded};

/// Longest window, for-duration and silence: 7 days.
pub const MAX_WINDOW_SECS: u64 = 7 * 24 * 3600;
/// Shortest window: a few heartbeats.
pub const MIN_WINDOW_SECS: u64 = 10;
/// Longest flap damping.
pub const MAX_RESOLVE_AFTER_SECS: u64 = 24 * 3600;

/// Every rule that is not deleted, as [`RuleRow`]s.
fn rules_sql() -> String {
    format!("SELECT ?fields FROM {ALERT_RULES} FINAL WHERE deleted = 0")
}

/// A stored rule, typed: what the evaluator runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub rule_id: String,
    pub name: String,
    pub kind: Kind,
    pub metric: Metric,
    /// Threshold rules only.
    pub aggregate: Option<Aggregate>,
    pub op: Op,
    pub threshold: f64,
    pub window_secs: u64,
    pub for_secs: u64,
    pub resolve_after_secs: u64,
    pub severity: Severity,
    pub clusters: Vec<String>,
    pub labels: Vec<String>,
    pub node_ids: Vec<String>,
    pub channels: Vec<String>,
    pub enabled: bool,
}

impl TryFrom<&RuleRow> for Rule {
    type Error = String;

    /// Fails only for a row no validated request could have written.
    fn try_from(r: &RuleRow) -> Result<Self, String> {
        let kind = Kind::parse(&r.kind).ok_or_else(|| format!("kind {:?}", r.kind))?;
        let metric = Metric::parse(&r.metric)
            .filter(|m| m.kind() == kind)
            .ok_or_else(|| format!("metric {:?}", r.metric))?;
        let aggregate = match kind {
            Kind::Threshold => Some(
                Aggregate::parse(&r.aggregate)
                    .ok_or_else(|| format!("aggregate {:?}", r.aggregate))?,
            ),
            _ => None,
        };
        Ok(Self {
            rule_id: r.rule_id.clone(),
            name: r.name.clone(),
            kind,
            metric,
            aggregate,
            op: Op::parse(&r.op).ok_or_else(|| format!("op {:?}", r.op))?,
            threshold: r.threshold,
            window_secs: r.window_secs,
            for_secs: r.for_secs,
            resolve_after_secs: r.resolve_after_secs,
            severity: Severity::parse(&r.severity)
                .ok_or_else(|| format!("severity {:?}", r.severity))?,
            clusters: r.clusters.clone(),
            labels: r.labels.clone(),
            node_ids: r.node_ids.clone(),
            channels: r.channels.clone(),
            enabled: r.enabled != 0,
        })
    }
}

/// A rule's checks that need no storage; fills in defaults. Cluster and channel references are
/// checked by [`save`].
pub fn validate(req: &SaveRule, problems: &mut Problems) -> AlertRuleSaved {
    if !crate::rule::valid_name(&req.name) {
        problems.add("name", "1 to 64 of [A-Za-z0-9._-]");
    }
    if req.description.len() > 512 {
        problems.add("description", "at most 512 bytes");
    }
    let c = condition(req, problems);
    let labels = scope(req, problems);
    let s = &req.scope;
    if Kind::parse(&req.kind).is_some_and(|k| !k.has_scope())
        && !(s.clusters.is_empty() && s.labels.is_empty() && s.node_ids.is_empty())
    {
        problems.add(
            "scope",
            "an archive rule watches the streams, not nodes: no scope",
        );
    }
    AlertRuleSaved {
        envelope: Envelope::new::<AlertRuleSaved>(String::new(), 0),
        rule_id: String::new(),
        name: req.name.clone(),
        description: req.description.clone(),
        kind: req.kind.clone(),
        metric: req.metric.clone(),
        aggregate: c.aggregate,
        op: c.op,
        threshold: c.threshold,
        window_secs: c.window_secs as i64,
        for_secs: req.for_secs.min(MAX_WINDOW_SECS) as i64,
        resolve_after_secs: c.resolve_after_secs as i64,
        severity: c.severity,
        clusters: Vec::new(),
        labels,
        node_ids: req.scope.node_ids.clone(),
        channels: Vec::new(),
        enabled: req.enabled.unwrap_or(true),
        requested_by: String::new(),
    }
}

/// A rule's condition with its defaults filled in, as it is stored.
struct Condition {
    aggregate: String,
    op: String,
    threshold: f64,
    window_secs: u64,
    resolve_after_secs: u64,
    severity: String,
}

/// Checks kind, metric, aggregate, comparison, threshold, window, damping and severity.
fn condition(req: &SaveRule, problems: &mut Problems) -> Condition {
    let kind = Kind::parse(&req.kind);
    match kind {
        None => problems.add(
            "kind",
            format!("{:?} is not one of {}", req.kind, Kind::names()),
        ),
        Some(kind) if Metric::parse(&req.metric).is_none_or(|m| m.kind() != kind) => {
            let names: Vec<&str> = Metric::of(kind).map(Metric::as_str).collect();
            problems.add(
                "metric",
                format!(
                    "{:?} is not a {} metric; one of {}",
                    req.metric,
                    req.kind,
                    names.join(", ")
                ),
            );
        }
        Some(_) => {}
    }
    let has_threshold = kind.is_some_and(Kind::has_threshold);
    let has_window = kind.is_some_and(Kind::has_window);
    let aggregate = req.aggregate.clone().unwrap_or_else(|| "avg".into());
    if kind == Some(Kind::Threshold) && Aggregate::parse(&aggregate).is_none() {
        problems.add(
            "aggregate",
            format!("{aggregate:?} is not one of {}", Aggregate::names()),
        );
    }
    let op = req.op.clone().unwrap_or_else(|| ">".into());
    if Op::parse(&op).is_none() {
        let ops: Vec<&str> = Op::ALL.iter().map(|o| o.as_str()).collect();
        problems.add("op", format!("{op:?} is not one of {}", ops.join(" ")));
    }
    let threshold = threshold(req, has_threshold, problems);
    let window = req.window_secs.unwrap_or(300);
    if has_window && !(MIN_WINDOW_SECS..=MAX_WINDOW_SECS).contains(&window) {
        problems.add(
            "window_secs",
            format!("{MIN_WINDOW_SECS} to {MAX_WINDOW_SECS} seconds"),
        );
    }
    if req.for_secs > MAX_WINDOW_SECS {
        problems.add("for_secs", format!("at most {MAX_WINDOW_SECS} seconds"));
    }
    let resolve_after = req.resolve_after_secs.unwrap_or(60);
    if resolve_after > MAX_RESOLVE_AFTER_SECS {
        problems.add(
            "resolve_after_secs",
            format!("at most {MAX_RESOLVE_AFTER_SECS} seconds"),
        );
    }
    let severity = req.severity.clone().unwrap_or_else(|| "warning".into());
    if Severity::parse(&severity).is_none() {
        problems.add(
            "severity",
            format!("{severity:?} is not one of {}", Severity::names()),
        );
    }
    Condition {
        aggregate: if kind == Some(Kind::Threshold) {
            aggregate
        } else {
            String::new()
        },
        op,
        threshold,
        window_secs: if has_window { window } else { 0 },
        resolve_after_secs: resolve_after.min(MAX_RESOLVE_AFTER_SECS),
        severity,
    }
}

/// The threshold: finite, a percentage for `_pct` metrics, required where the kind compares.
fn threshold(req: &SaveRule, has_threshold: bool, problems: &mut Problems) -> f64 {
    match req.threshold {
        Some(t) if !t.is_finite() => {
            problems.add("threshold", "must be a finite number");
            0.0
        }
        Some(t) => {
            if req.metric.ends_with("_pct") && !(0.0..=100.0).contains(&t) {
                problems.add("threshold", "a percentage: 0 to 100");
            }
            t
        }
        None if has_threshold => {
            problems.add("threshold", "required for every kind but absence");
            0.0
        }
        None => 0.0,
    }
}

/// Checks the scope's labels and node ids; the labels as stored (`key=value`).
fn scope(req: &SaveRule, problems: &mut Problems) -> Vec<String> {
    let mut labels = Vec::new();
    for l in &req.scope.labels {
        match nerve_schemas::control::parse_label(l) {
            Ok(l) => labels.push(format!("{}={}", l.key, l.value)),
            Err(e) => problems.add("scope.labels", e),
        }
    }
    for id in &req.scope.node_ids {
        if !subjects::is_valid_node_id(id) {
            problems.add("scope.node_ids", format!("{id:?} is not a node id"));
        }
    }
    labels
}

/// Stored rules, by name; only the one named by id or name with `only`.
pub async fn stored(ctx: &Context, only: Option<&str>) -> Result<Vec<RuleRow>, AlertsError> {
    let mut sql = rules_sql();
    if only.is_some() {
        sql.push_str(" AND (rule_id = ? OR name = ?)");
    }
    sql.push_str(" ORDER BY name");
    let mut q = ctx.ch().query(&sql);
    if let Some(key) = only {
        q = q.bind(key).bind(key);
    }
    Ok(q.fetch_all().await?)
}

/// The rule named by id or name.
pub async fn find(ctx: &Context, key: &str) -> Result<RuleRow, AlertsError> {
    stored(ctx, Some(key))
        .await?
        .into_iter()
        .next()
        .ok_or_else(|| AlertsError::NotFound(format!("alert rule {key} not found")))
}

/// Creates a rule (`existing` None) or replaces one, on behalf of `by`.
pub async fn save(
    ctx: &Context,
    existing: Option<&str>,
    req: SaveRule,
    by: &str,
) -> Result<Recorded, AlertsError> {
    let current = match existing {
        Some(key) => Some(find(ctx, key).await?),
        None => None,
    };
    let mut problems = Problems::default();
    let mut event = validate(&req, &mut problems);
    if crate::rule::valid_name(&req.name)
        && let Ok(other) = find(ctx, &req.name).await
        && current.as_ref().is_none_or(|c| c.rule_id != other.rule_id)
    {
        problems.add("name", format!("a rule named {:?} exists", req.name));
    }
    for key in &req.scope.clusters {
        match scope::cluster_ids(ctx.ch(), std::slice::from_ref(key)).await? {
            Ok(ids) => event.clusters.extend(ids),
            Err(m) => problems.add("scope.clusters", m),
        }
    }
    for key in &req.channels {
        match crate::notify::find(ctx, key).await {
            Ok(c) => event.channels.push(c.channel_id),
            Err(AlertsError::NotFound(_)) => {
                problems.add("channels", format!("unknown channel {key:?}"))
            }
            Err(e) => return Err(e),
        }
    }
    problems.finish()?;
    event.clusters.sort();
    event.clusters.dedup();
    event.channels.sort();
    event.channels.dedup();
    let id = current.map_or_else(|| uuid::Uuid::now_v7().to_string(), |c| c.rule_id);
    event.envelope = Envelope::new::<AlertRuleSaved>(id.clone(), nerve_platform::now_ms());
    event.rule_id = id.clone();
    by.clone_into(&mut event.requested_by);
    ctx.record(subjects::control_rule(&id), &event, id).await
}

/// Deletes a rule on behalf of `by`; the evaluator resolves its open alerts.
pub async fn delete(ctx: &Context, key: &str, by: &str) -> Result<Recorded, AlertsError> {
    let id = find(ctx, key).await?.rule_id;
    let event = AlertRuleDeleted {
        envelope: Envelope::new::<AlertRuleDeleted>(id.clone(), nerve_platform::now_ms()),
        rule_id: id.clone(),
        requested_by: by.to_owned(),
    };
    ctx.record(subjects::control_rule(&id), &event, id).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::RuleScope;

    fn fields(req: &SaveRule) -> Vec<String> {
        let mut p = Problems::default();
        validate(req, &mut p);
        p.0.into_iter().map(|f| f.field).collect()
    }

    #[test]
    fn a_good_rule_has_no_problems_and_gets_defaults() {
        let req = SaveRule {
            name: "cpu-hot".into(),
            kind: "threshold".into(),
            metric: "cpu_pct".into(),
            threshold: Some(95.0),
            ..SaveRule::default()
        };
        let mut p = Problems::default();
        let e = validate(&req, &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        assert_eq!(
            (e.aggregate.as_str(), e.op.as_str(), e.window_secs),
            ("avg", ">", 300)
        );
        assert_eq!((e.severity.as_str(), e.resolve_after_secs), ("warning", 60));
        assert!(e.enabled);
    }

    #[test]
    fn an_archive_rule_takes_a_threshold_but_no_window_and_no_scope() {
        let mut req = SaveRule {
            name: "archive-behind".into(),
            kind: "archive".into(),
            metric: "archive_lag_pct".into(),
            threshold: Some(25.0),
            window_secs: Some(1),
            ..SaveRule::default()
        };
        let mut p = Problems::default();
        let e = validate(&req, &mut p);
        assert!(p.0.is_empty(), "{:?}", p.0);
        assert_eq!(e.window_secs, 0);
        req.scope.node_ids = vec!["n-1".into()];
        req.threshold = Some(250.0);
        assert_eq!(fields(&req), ["threshold", "scope"]);
        req.metric = "cpu_pct".into();
        assert_eq!(fields(&req)[0], "metric");
    }

    #[test]
    fn every_bad_field_is_named() {
        let req = SaveRule {
            name: "bad name".into(),
            kind: "threshold".into(),
            metric: "gpu_temp".into(),
            aggregate: Some("median".into()),
            op: Some("==".into()),
            threshold: None,
            window_secs: Some(1),
            severity: Some("page".into()),
            scope: RuleScope {
                labels: vec!["GPU".into()],
                node_ids: vec!["a b".into()],
                ..RuleScope::default()
            },
            ..SaveRule::default()
        };
        assert_eq!(
            fields(&req),
            [
                "name",
                "metric",
                "aggregate",
                "op",
                "threshold",
                "window_secs",
                "severity",
                "scope.labels",
                "scope.node_ids"
            ]
        );
        let pct = SaveRule {
            name: "x".into(),
            kind: "threshold".into(),
            metric: "disk_used_pct".into(),
            threshold: Some(120.0),
            ..SaveRule::default()
        };
        assert_eq!(fields(&pct), ["threshold"]);
        let absence = SaveRule {
            name: "gone".into(),
            kind: "absence".into(),
            metric: "offline".into(),
            ..SaveRule::default()
        };
        assert!(fields(&absence).is_empty());
        assert_eq!(
            fields(&SaveRule {
                name: "x".into(),
                kind: "nope".into(),
                ..SaveRule::default()
            }),
            ["kind"]
        );
    }
}
