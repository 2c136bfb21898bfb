//! Control events: operators' (and agents') changes to how the fleet is organised — clusters,
//! membership, labels. Each mirrors its `.avsc` file field for field (checked by tests).

use serde::{Deserialize, Serialize};

use crate::events::Envelope;

/// `ClusterCreated` v1. The envelope's `node_id` is the cluster id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterCreated {
    pub envelope: Envelope,
    pub cluster_id: String,
    pub name: String,
    pub description: String,
    pub requested_by: String,
}
event!(ClusterCreated, 1);

/// `ClusterRenamed` v1. The envelope's `node_id` is the cluster id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterRenamed {
    pub envelope: Envelope,
    pub cluster_id: String,
    pub name: String,
    pub requested_by: String,
}
event!(ClusterRenamed, 1);

/// `ClusterDeleted` v1. The envelope's `node_id` is the cluster id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterDeleted {
    pub envelope: Envelope,
    pub cluster_id: String,
    pub requested_by: String,
}
event!(ClusterDeleted, 1);

/// `NodeAssignedToCluster` v1. The envelope's `node_id` is the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeAssignedToCluster {
    pub envelope: Envelope,
    pub cluster_id: String,
    pub requested_by: String,
}
event!(NodeAssignedToCluster, 1);

/// `NodeUnassignedFromCluster` v1. The envelope's `node_id` is the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeUnassignedFromCluster {
    pub envelope: Envelope,
    pub cluster_id: String,
    pub requested_by: String,
}
event!(NodeUnassignedFromCluster, 1);

/// One `key=value` label.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Label {
    pub key: String,
    pub value: String,
}

/// `NodeLabelsSet` v1: a node's labels from one source, replacing that source's earlier set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeLabelsSet {
    pub envelope: Envelope,
    /// `agent` or `operator`.
    pub source: String,
    pub labels: Vec<Label>,
    pub requested_by: String,
}
event!(NodeLabelsSet, 1);

/// Where a node stands for scheduling and repair: in service; cordoned (no new work unless a
/// request names it); remediating (a policy's ladder is running on it); verifying (a health
/// check decides whether it returns); service required (a person or an RMA is needed).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MaintenanceState {
    #[default]
    InService,
    Cordoned,
    Remediating,
    Verifying,
    ServiceRequired,
}

impl MaintenanceState {
    pub const ALL: [MaintenanceState; 5] = [
        MaintenanceState::InService,
        MaintenanceState::Cordoned,
        MaintenanceState::Remediating,
        MaintenanceState::Verifying,
        MaintenanceState::ServiceRequired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MaintenanceState::InService => "in_service",
            MaintenanceState::Cordoned => "cordoned",
            MaintenanceState::Remediating => "remediating",
            MaintenanceState::Verifying => "verifying",
            MaintenanceState::ServiceRequired => "service_required",
        }
    }

    /// The state named `text`; an empty text (a node never changed) is in service.
    pub fn parse(text: &str) -> Option<Self> {
        if text.is_empty() {
            return Some(MaintenanceState::InService);
        }
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }

    /// Whether untargeted work skips the node: every state but in service.
    pub fn held(self) -> bool {
        self != MaintenanceState::InService
    }
}

/// `NodeMaintenanceChanged` v1: a node's maintenance state changed. The envelope's `node_id` is
/// the node; an operator's change has no policy or run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeMaintenanceChanged {
    pub envelope: Envelope,
    /// A [`MaintenanceState`] name.
    pub state: String,
    pub reason: String,
    pub policy_id: String,
    pub run_id: String,
    pub requested_by: String,
}
event!(NodeMaintenanceChanged, 1);

/// Whether `key` can be a label key: 1..=63 of `[a-z0-9_.-]`, or with a `domain/` prefix.
pub fn is_valid_label_key(key: &str) -> bool {
    let name = key.rsplit_once('/').map_or(key, |(_, n)| n);
    !name.is_empty()
        && key.len() <= 128
        && name.len() <= 63
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'.' | b'-' | b'/')
        })
}

/// Whether `value` can be a label value: up to 128 printable ASCII characters, no `,` or `=`.
pub fn is_valid_label_value(value: &str) -> bool {
    value.len() <= 128
        && value
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'=')
}

/// Parses `key=value`.
pub fn parse_label(text: &str) -> Result<Label, String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("label {text:?} is not key=value"))?;
    if !is_valid_label_key(key) {
        return Err(format!(
            "label key {key:?}: 1 to 63 of [a-z0-9_.-], optionally behind a domain/ prefix"
        ));
    }
    if !is_valid_label_value(value) {
        return Err(format!(
            "label value {value:?}: up to 128 printable characters without ',' or '='"
        ));
    }
    Ok(Label {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::Event;

    use crate::registry::assert_round_trips as check;

    #[test]
    fn every_control_event_follows_its_schema_and_round_trips() {
        let env = |name: &str| Envelope {
            schema_name: name.to_owned(),
            ..Envelope::new::<ClusterCreated>("c-1", 1_700_000_000_000)
        };
        let cid = "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6d".to_owned();
        check(&ClusterCreated {
            envelope: env(ClusterCreated::NAME),
            cluster_id: cid.clone(),
            name: "training-a".into(),
            description: "H100 pods".into(),
            requested_by: "ops".into(),
        });
        check(&ClusterRenamed {
            envelope: env(ClusterRenamed::NAME),
            cluster_id: cid.clone(),
            name: "training-b".into(),
            requested_by: "ops".into(),
        });
        check(&ClusterDeleted {
            envelope: env(ClusterDeleted::NAME),
            cluster_id: cid.clone(),
            requested_by: "ops".into(),
        });
        check(&NodeAssignedToCluster {
            envelope: env(NodeAssignedToCluster::NAME),
            cluster_id: cid.clone(),
            requested_by: "ops".into(),
        });
        check(&NodeUnassignedFromCluster {
            envelope: env(NodeUnassignedFromCluster::NAME),
            cluster_id: cid,
            requested_by: "ops".into(),
        });
        check(&NotificationChannelSaved {
            envelope: env(NotificationChannelSaved::NAME),
            channel_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6e".into(),
            name: "ops-hook".into(),
            kind: "webhook".into(),
            url: "https://hooks.example/nerve".into(),
            secret: "s3cret".into(),
            requested_by: "ops".into(),
        });
        check(&NotificationChannelDeleted {
            envelope: env(NotificationChannelDeleted::NAME),
            channel_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6e".into(),
            requested_by: "ops".into(),
        });
        check(&NotificationAttempted {
            envelope: env(NotificationAttempted::NAME),
            channel_id: "0192f0c4-7d1a-7c3e-9d51-1f2e3a4b5c6e".into(),
            alert_id: String::new(),
            attempt: 2,
            ok: true,
            http_status: Some(200),
            error: String::new(),
            latency_ms: 12,
        });
        check(&NodeLabelsSet {
            envelope: env(NodeLabelsSet::NAME),
            source: "agent".into(),
            labels: vec![Label {
                key: "gpu".into(),
                value: "h100".into(),
            }],
            requested_by: "agent".into(),
        });
        check(&NodeMaintenanceChanged {
            envelope: env(NodeMaintenanceChanged::NAME),
            state: MaintenanceState::Cordoned.as_str().into(),
            reason: "fan replacement".into(),
            policy_id: String::new(),
            run_id: String::new(),
            requested_by: "ops".into(),
        });
    }

    #[test]
    fn maintenance_states_parse_by_name() {
        for s in MaintenanceState::ALL {
            assert_eq!(MaintenanceState::parse(s.as_str()), Some(s));
            let json = serde_json::to_string(&s).expect("json");
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
        assert_eq!(
            MaintenanceState::parse(""),
            Some(MaintenanceState::InService)
        );
        assert_eq!(MaintenanceState::parse("drained"), None);
        assert!(!MaintenanceState::InService.held());
        assert!(MaintenanceState::Verifying.held());
    }

    #[test]
    fn labels_parse_and_bad_ones_are_explained() {
        assert_eq!(
            parse_label("nerve.io/rack=r12").expect("ok"),
            Label {
                key: "nerve.io/rack".into(),
                value: "r12".into()
            }
        );
        assert!(parse_label("gpu").unwrap_err().contains("key=value"));
        assert!(parse_label("GPU=h100").unwrap_err().contains("label key"));
        assert!(parse_label("gpu=a,b").unwrap_err().contains("label value"));
        assert!(parse_label("gpu=").is_ok(), "empty values are allowed");
    }
}

/// `NotificationChannelSaved` v1. The envelope's `node_id` is the channel id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationChannelSaved {
    pub envelope: Envelope,
    pub channel_id: String,
    pub name: String,
    /// `webhook` or `slack`.
    pub kind: String,
    pub url: String,
    /// webhook: the HMAC key.
    pub secret: String,
    pub requested_by: String,
}
event!(NotificationChannelSaved, 1);

/// `NotificationChannelDeleted` v1. The envelope's `node_id` is the channel id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationChannelDeleted {
    pub envelope: Envelope,
    pub channel_id: String,
    pub requested_by: String,
}
event!(NotificationChannelDeleted, 1);

/// `NotificationAttempted` v1: one delivery attempt. The envelope's `node_id` is the channel id.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationAttempted {
    pub envelope: Envelope,
    pub channel_id: String,
    /// Empty for a test send.
    pub alert_id: String,
    pub attempt: i32,
    pub ok: bool,
    pub http_status: Option<i32>,
    pub error: String,
    pub latency_ms: i64,
}
event!(NotificationAttempted, 1);
