//! Control projection: the control stream → `cluster_log` (every cluster event; clusters are
//! few, so their current state is folded at query time), `cluster_members` (membership,
//! ReplacingMergeTree keyed by (cluster, node), last change wins) and `node_labels` (each node's
//! label set per source, ReplacingMergeTree keyed by (node, source), last set wins) with
//! `label_log` (every label set, the history a past time's labels are read from),
//! `channels` (notification channels, last save wins, deletion kept as a flag) and
//! `notification_attempts` (every delivery attempt with its result), `alert_rules` (each rule,
//! last save wins, deletion kept as a flag), `silence_log` (silences created and ended;
//! folded at query time), `maintenance_log` (nodes' maintenance states, [`crate::maintenance`])
//! and the remediation policies and journal ([`crate::remediation`]).

use clickhouse::Client;
pub use nerve_schemas::ControlEvent;

use crate::maintenance::{MAINTENANCE_LOG, MaintenanceRow};
use crate::remediation::{JournalRow, PolicyRow, REMEDIATION_LOG, REMEDIATION_POLICIES};
use crate::runner::{EventKey, Positioned, Projection, insert_rows, validate_envelope};

mod rows;

pub use rows::*;

/// Durable consumer name.
pub const NAME: &str = "proj_control";

/// Table: Every cluster event.
pub const CLUSTER_LOG: &str = "cluster_log";
/// Table: Membership per (cluster, node).
pub const CLUSTER_MEMBERS: &str = "cluster_members";
/// Table: Each node's label set per source.
pub const NODE_LABELS: &str = "node_labels";
/// Table: Every label set (history).
pub const LABEL_LOG: &str = "label_log";
/// Table: Notification channels.
pub const CHANNELS: &str = "channels";
/// Table: Every delivery attempt.
pub const NOTIFICATION_ATTEMPTS: &str = "notification_attempts";
/// Table: Alert rules.
pub const ALERT_RULES: &str = "alert_rules";
/// Table: Silences created and ended.
pub const SILENCE_LOG: &str = "silence_log";

/// The columns of `node_labels` and `label_log`.
const LABEL_COLUMNS: &str = "(node_id String, source String, keys Array(String), \
    labels Array(String), changed_at_ms UInt64, requested_by String, stream_seq UInt64)";

pub fn ddl(db: &str) -> Vec<String> {
    vec![
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{CLUSTER_LOG} (
                node_id String,
                ts DateTime('UTC'),
                ts_ms UInt64,
                event_id UUID,
                kind String,
                cluster_id String,
                name String,
                description String,
                requested_by String,
                stream_seq UInt64
            ) ENGINE = MergeTree()
            ORDER BY (cluster_id, stream_seq)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{CLUSTER_MEMBERS} (
                cluster_id String,
                node_id String,
                assigned UInt8,
                changed_at_ms UInt64,
                requested_by String,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY (cluster_id, node_id)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{NODE_LABELS} {LABEL_COLUMNS}
            ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY (node_id, source)"
        ),
        // Keyed by the event, so a set written twice (a redelivered batch) is one row.
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{LABEL_LOG} {LABEL_COLUMNS}
            ENGINE = ReplacingMergeTree()
            ORDER BY (node_id, source, stream_seq)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{CHANNELS} (
                channel_id String,
                name String,
                kind String,
                url String,
                secret String,
                deleted UInt8,
                updated_at_ms UInt64,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY channel_id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{NOTIFICATION_ATTEMPTS} (
                channel_id String,
                alert_id String,
                attempt UInt32,
                ok UInt8,
                http_status Nullable(Int32),
                error String,
                latency_ms UInt64,
                ts_ms UInt64,
                stream_seq UInt64
            ) ENGINE = MergeTree()
            ORDER BY (channel_id, ts_ms, stream_seq)"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{ALERT_RULES} (
                rule_id String,
                name String,
                description String,
                kind String,
                metric String,
                aggregate String,
                op String,
                threshold Float64,
                window_secs UInt64,
                for_secs UInt64,
                resolve_after_secs UInt64,
                severity String,
                clusters Array(String),
                labels Array(String),
                node_ids Array(String),
                channels Array(String),
                enabled UInt8,
                deleted UInt8,
                updated_at_ms UInt64,
                updated_by String,
                stream_seq UInt64
            ) ENGINE = ReplacingMergeTree(stream_seq)
            ORDER BY rule_id"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {db}.{SILENCE_LOG} (
                silence_id String,
                kind String,
                match_rule_id String,
                match_node_id String,
                match_cluster_id String,
                starts_at_ms UInt64,
                ends_at_ms UInt64,
                reason String,
                requested_by String,
                ts_ms UInt64,
                stream_seq UInt64
            ) ENGINE = MergeTree()
            ORDER BY (silence_id, stream_seq)"
        ),
        crate::maintenance::ddl(db),
    ]
    .into_iter()
    .chain(crate::remediation::ddl(db))
    .collect()
}

/// The subject prefix and id of an event about a channel, rule or silence (named by a UUID
/// that is also the envelope's `node_id`).
fn entity(event: &ControlEvent) -> Option<(&'static str, &str)> {
    match event {
        ControlEvent::NotificationChannelSaved(e) => Some(("channel", &e.channel_id)),
        ControlEvent::NotificationChannelDeleted(e) => Some(("channel", &e.channel_id)),
        ControlEvent::NotificationAttempted(e) => Some(("channel", &e.channel_id)),
        ControlEvent::AlertRuleSaved(e) => Some(("rule", &e.rule_id)),
        ControlEvent::AlertRuleDeleted(e) => Some(("rule", &e.rule_id)),
        ControlEvent::SilenceCreated(e) => Some(("silence", &e.silence_id)),
        ControlEvent::SilenceDeleted(e) => Some(("silence", &e.silence_id)),
        ControlEvent::RemediationPolicySaved(e) => Some(("policy", &e.policy_id)),
        ControlEvent::RemediationPolicyDeleted(e) => Some(("policy", &e.policy_id)),
        _ => None,
    }
}

/// A validated control event.
#[derive(Debug)]
pub struct Decoded {
    pub event: ControlEvent,
    pub event_id: uuid::Uuid,
}

/// Folds control events.
#[derive(Debug, Clone, Copy, Default)]
pub struct ControlProjection;

impl Projection for ControlProjection {
    type Item = Decoded;

    fn name(&self) -> &'static str {
        NAME
    }

    fn stream(&self) -> &'static str {
        nerve_ingest::CONTROL_STREAM
    }

    fn decode(&self, subject: &str, payload: &[u8], published_ms: i64) -> Result<Decoded, String> {
        let event = ControlEvent::decode(payload).map_err(|e| e.to_string())?;
        if let Some((kind, id)) = entity(&event) {
            if !subject.starts_with(&format!("nerve.v1.control.{kind}.")) {
                return Err(format!("event does not belong on subject {subject}"));
            }
            if uuid::Uuid::parse_str(id).is_err() || event.envelope().node_id != id {
                return Err(format!(
                    "a {kind} event's envelope must name its {kind} (a UUID)"
                ));
            }
            let event_id = validate_envelope(event.envelope(), subject, published_ms)?;
            return Ok(Decoded { event, event_id });
        }
        match &event {
            ControlEvent::NodeMaintenanceChanged(e) => crate::maintenance::validate(e, subject)?,
            ControlEvent::RemediationRecorded(e) => crate::remediation::validate(e, subject)?,
            _ if subject.starts_with("nerve.v1.control.maintenance.")
                || subject.starts_with("nerve.v1.control.remediation.") =>
            {
                return Err(format!("event does not belong on subject {subject}"));
            }
            _ => {}
        }
        let cluster_subject = subject.starts_with("nerve.v1.control.cluster.");
        let about_cluster = matches!(
            event,
            ControlEvent::ClusterCreated(_)
                | ControlEvent::ClusterRenamed(_)
                | ControlEvent::ClusterDeleted(_)
        );
        if about_cluster != cluster_subject {
            return Err(format!("event does not belong on subject {subject}"));
        }
        let cluster_id = match &event {
            ControlEvent::ClusterCreated(e) => Some(&e.cluster_id),
            ControlEvent::ClusterRenamed(e) => Some(&e.cluster_id),
            ControlEvent::ClusterDeleted(e) => Some(&e.cluster_id),
            ControlEvent::NodeAssignedToCluster(e) => Some(&e.cluster_id),
            ControlEvent::NodeUnassignedFromCluster(e) => Some(&e.cluster_id),
            _ => None,
        };
        if let Some(id) = cluster_id
            && uuid::Uuid::parse_str(id).is_err()
        {
            return Err(format!("cluster_id {id:?} is not a UUID"));
        }
        if about_cluster
            && cluster_id.map(String::as_str) != Some(event.envelope().node_id.as_str())
        {
            return Err("a cluster event's envelope must name its cluster".into());
        }
        let event_id = validate_envelope(event.envelope(), subject, published_ms)?;
        Ok(Decoded { event, event_id })
    }

    fn key(item: &Decoded) -> EventKey<'_> {
        EventKey::of(item.event.envelope())
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            CLUSTER_MEMBERS,
            NODE_LABELS,
            LABEL_LOG,
            CHANNELS,
            NOTIFICATION_ATTEMPTS,
            ALERT_RULES,
            SILENCE_LOG,
            MAINTENANCE_LOG,
            REMEDIATION_POLICIES,
            REMEDIATION_LOG,
            CLUSTER_LOG,
        ]
    }

    fn append_only_table(&self) -> Option<&'static str> {
        Some(CLUSTER_LOG)
    }

    async fn write(
        &self,
        ch: &Client,
        items: &[Positioned<Decoded>],
    ) -> Result<(), clickhouse::error::Error> {
        let mut members = Vec::new();
        let mut labels = Vec::new();
        let mut channels = Vec::new();
        let mut attempts = Vec::new();
        let mut rules = Vec::new();
        let mut silences = Vec::new();
        let mut maintenance = Vec::new();
        let mut policies = Vec::new();
        let mut journal = Vec::new();
        let mut log = Vec::new();
        for p in items {
            let env = p.item.event.envelope();
            let at = env.occurred_at_ms.max(0) as u64;
            let entry = |cluster_id: &str, name: &str, description: &str, by: &str| ClusterLogRow {
                node_id: env.node_id.clone(),
                ts: (at / 1000).min(u64::from(u32::MAX)) as u32,
                ts_ms: at,
                event_id: p.item.event_id,
                kind: env.schema_name.clone(),
                cluster_id: cluster_id.to_owned(),
                name: name.to_owned(),
                description: description.to_owned(),
                requested_by: by.to_owned(),
                stream_seq: p.stream_seq,
            };
            let member = |cluster_id: &str, assigned: bool, by: &str| MemberRow {
                cluster_id: cluster_id.to_owned(),
                node_id: env.node_id.clone(),
                assigned: u8::from(assigned),
                changed_at_ms: at,
                requested_by: by.to_owned(),
                stream_seq: p.stream_seq,
            };
            match &p.item.event {
                ControlEvent::ClusterCreated(e) => log.push(entry(
                    &e.cluster_id,
                    &e.name,
                    &e.description,
                    &e.requested_by,
                )),
                ControlEvent::ClusterRenamed(e) => {
                    log.push(entry(&e.cluster_id, &e.name, "", &e.requested_by))
                }
                ControlEvent::ClusterDeleted(e) => {
                    log.push(entry(&e.cluster_id, "", "", &e.requested_by))
                }
                ControlEvent::NodeAssignedToCluster(e) => {
                    members.push(member(&e.cluster_id, true, &e.requested_by));
                    log.push(entry(&e.cluster_id, "", "", &e.requested_by));
                }
                ControlEvent::NodeUnassignedFromCluster(e) => {
                    members.push(member(&e.cluster_id, false, &e.requested_by));
                    log.push(entry(&e.cluster_id, "", "", &e.requested_by));
                }
                ControlEvent::NodeLabelsSet(e) => {
                    let mut set = e.labels.clone();
                    set.sort();
                    set.dedup_by(|a, b| a.key == b.key);
                    labels.push(LabelsRow {
                        node_id: env.node_id.clone(),
                        source: e.source.clone(),
                        keys: set.iter().map(|l| l.key.clone()).collect(),
                        labels: set
                            .iter()
                            .map(|l| format!("{}={}", l.key, l.value))
                            .collect(),
                        changed_at_ms: at,
                        requested_by: e.requested_by.clone(),
                        stream_seq: p.stream_seq,
                    });
                    log.push(entry("", "", "", &e.requested_by));
                }
                ControlEvent::NodeMaintenanceChanged(e) => {
                    maintenance.push(MaintenanceRow::of(e, p.stream_seq));
                    log.push(entry("", &e.state, &e.reason, &e.requested_by));
                }
                ControlEvent::RemediationPolicySaved(e) => {
                    policies.push(PolicyRow::saved(e, at, p.stream_seq));
                    log.push(entry("", &e.name, "", &e.requested_by));
                }
                ControlEvent::RemediationPolicyDeleted(e) => {
                    policies.push(PolicyRow::deleted(
                        &e.policy_id,
                        &e.requested_by,
                        at,
                        p.stream_seq,
                    ));
                    log.push(entry("", "", "", &e.requested_by));
                }
                ControlEvent::RemediationRecorded(e) => {
                    journal.push(JournalRow::of(e, p.stream_seq));
                    log.push(entry("", &e.kind, &e.detail, &e.requested_by));
                }
                ControlEvent::NotificationChannelSaved(e) => {
                    channels.push(ChannelRow {
                        channel_id: e.channel_id.clone(),
                        name: e.name.clone(),
                        kind: e.kind.clone(),
                        url: e.url.clone(),
                        secret: e.secret.clone(),
                        deleted: 0,
                        updated_at_ms: at,
                        stream_seq: p.stream_seq,
                    });
                    log.push(entry("", &e.name, "", &e.requested_by));
                }
                ControlEvent::NotificationChannelDeleted(e) => {
                    channels.push(ChannelRow {
                        channel_id: e.channel_id.clone(),
                        name: String::new(),
                        kind: String::new(),
                        url: String::new(),
                        secret: String::new(),
                        deleted: 1,
                        updated_at_ms: at,
                        stream_seq: p.stream_seq,
                    });
                    log.push(entry("", "", "", &e.requested_by));
                }
                ControlEvent::NotificationAttempted(e) => {
                    attempts.push(AttemptRow {
                        channel_id: e.channel_id.clone(),
                        alert_id: e.alert_id.clone(),
                        attempt: e.attempt.max(0) as u32,
                        ok: u8::from(e.ok),
                        http_status: e.http_status,
                        error: e.error.clone(),
                        latency_ms: e.latency_ms.max(0) as u64,
                        ts_ms: at,
                        stream_seq: p.stream_seq,
                    });
                    log.push(entry("", "", "", "notifier"));
                }
                ControlEvent::AlertRuleSaved(e) => {
                    rules.push(RuleRow::saved(e, at, p.stream_seq));
                    log.push(entry("", &e.name, "", &e.requested_by));
                }
                ControlEvent::AlertRuleDeleted(e) => {
                    rules.push(RuleRow {
                        rule_id: e.rule_id.clone(),
                        deleted: 1,
                        updated_at_ms: at,
                        updated_by: e.requested_by.clone(),
                        stream_seq: p.stream_seq,
                        ..RuleRow::default()
                    });
                    log.push(entry("", "", "", &e.requested_by));
                }
                ControlEvent::SilenceCreated(e) => {
                    silences.push(SilenceRow {
                        silence_id: e.silence_id.clone(),
                        kind: env.schema_name.clone(),
                        match_rule_id: e.match_rule_id.clone(),
                        match_node_id: e.match_node_id.clone(),
                        match_cluster_id: e.match_cluster_id.clone(),
                        starts_at_ms: e.starts_at_ms.max(0) as u64,
                        ends_at_ms: e.ends_at_ms.max(0) as u64,
                        reason: e.reason.clone(),
                        requested_by: e.requested_by.clone(),
                        ts_ms: at,
                        stream_seq: p.stream_seq,
                    });
                    log.push(entry("", "", &e.reason, &e.requested_by));
                }
                ControlEvent::SilenceDeleted(e) => {
                    silences.push(SilenceRow {
                        silence_id: e.silence_id.clone(),
                        kind: env.schema_name.clone(),
                        match_rule_id: String::new(),
                        match_node_id: String::new(),
                        match_cluster_id: String::new(),
                        starts_at_ms: 0,
                        ends_at_ms: at,
                        reason: String::new(),
                        requested_by: e.requested_by.clone(),
                        ts_ms: at,
                        stream_seq: p.stream_seq,
                    });
                    log.push(entry("", "", "", &e.requested_by));
                }
            }
        }
        insert_rows(ch, CLUSTER_MEMBERS, &members).await?;
        insert_rows(ch, NODE_LABELS, &labels).await?;
        insert_rows(ch, LABEL_LOG, &labels).await?;
        insert_rows(ch, CHANNELS, &channels).await?;
        insert_rows(ch, NOTIFICATION_ATTEMPTS, &attempts).await?;
        insert_rows(ch, ALERT_RULES, &rules).await?;
        insert_rows(ch, SILENCE_LOG, &silences).await?;
        insert_rows(ch, MAINTENANCE_LOG, &maintenance).await?;
        insert_rows(ch, REMEDIATION_POLICIES, &policies).await?;
        insert_rows(ch, REMEDIATION_LOG, &journal).await?;
        // Last: an event found here had everything above written.
        insert_rows(ch, CLUSTER_LOG, &log).await
    }
}
