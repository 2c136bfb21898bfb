//! The registry of every released schema version, keyed by Avro fingerprint.
//!
//! To release a new version: add the `.avsc` file, append it to [`RELEASED`], bump the Rust
//! type's `VERSION`. The tests check the whole list for parse errors and compatibility.

use std::collections::HashMap;
use std::sync::LazyLock;

use apache_avro::Schema;
use apache_avro::rabin::Rabin;

/// One released schema file.
#[derive(Debug, Clone, Copy)]
pub struct SchemaFile {
    /// The event (Avro record) name.
    pub name: &'static str,
    /// Its version.
    pub version: i32,
    /// The file under `schemas/avro/`.
    pub file: &'static str,
    /// The file's text.
    pub text: &'static str,
}

macro_rules! schema_file {
    ($name:literal, $version:literal, $file:literal) => {
        SchemaFile {
            name: $name,
            version: $version,
            file: $file,
            text: include_str!(concat!("../avro/", $file)),
        }
    };
}

/// Every released schema, oldest version first within each event.
pub const RELEASED: &[SchemaFile] = &[
    schema_file!("HeartbeatRecorded", 1, "heartbeat_recorded.v1.avsc"),
    schema_file!("HeartbeatRecorded", 2, "heartbeat_recorded.v2.avsc"),
    schema_file!("InventoryReported", 1, "inventory_reported.v1.avsc"),
    schema_file!("InventoryReported", 2, "inventory_reported.v2.avsc"),
    schema_file!("InventoryReported", 3, "inventory_reported.v3.avsc"),
    schema_file!("GpuXidOccurred", 1, "gpu_xid_occurred.v1.avsc"),
    schema_file!("NodeBecameSuspect", 1, "node_became_suspect.v1.avsc"),
    schema_file!("NodeWentOffline", 1, "node_went_offline.v1.avsc"),
    schema_file!("NodeCameBack", 1, "node_came_back.v1.avsc"),
    schema_file!("TaskRequested", 1, "task_requested.v1.avsc"),
    schema_file!("TaskCancelRequested", 1, "task_cancel_requested.v1.avsc"),
    schema_file!("TaskDispatched", 1, "task_dispatched.v1.avsc"),
    schema_file!("TaskAccepted", 1, "task_accepted.v1.avsc"),
    schema_file!("TaskQueued", 1, "task_queued.v1.avsc"),
    schema_file!("TaskStarted", 1, "task_started.v1.avsc"),
    schema_file!("TaskOutputProduced", 1, "task_output_produced.v1.avsc"),
    schema_file!("TaskFinished", 1, "task_finished.v1.avsc"),
    schema_file!("TaskTimedOut", 1, "task_timed_out.v1.avsc"),
    schema_file!("TaskCancelled", 1, "task_cancelled.v1.avsc"),
    schema_file!("TaskUnreachable", 1, "task_unreachable.v1.avsc"),
    schema_file!("TaskOfferRefused", 1, "task_offer_refused.v1.avsc"),
    schema_file!("ClusterCreated", 1, "cluster_created.v1.avsc"),
    schema_file!("ClusterRenamed", 1, "cluster_renamed.v1.avsc"),
    schema_file!("ClusterDeleted", 1, "cluster_deleted.v1.avsc"),
    schema_file!(
        "NodeAssignedToCluster",
        1,
        "node_assigned_to_cluster.v1.avsc"
    ),
    schema_file!(
        "NodeUnassignedFromCluster",
        1,
        "node_unassigned_from_cluster.v1.avsc"
    ),
    schema_file!("NodeLabelsSet", 1, "node_labels_set.v1.avsc"),
    schema_file!(
        "NodeMaintenanceChanged",
        1,
        "node_maintenance_changed.v1.avsc"
    ),
    schema_file!(
        "NotificationChannelSaved",
        1,
        "notification_channel_saved.v1.avsc"
    ),
    schema_file!(
        "NotificationChannelDeleted",
        1,
        "notification_channel_deleted.v1.avsc"
    ),
    schema_file!("NotificationAttempted", 1, "notification_attempted.v1.avsc"),
    schema_file!("AlertRuleSaved", 1, "alert_rule_saved.v1.avsc"),
    schema_file!("AlertRuleDeleted", 1, "alert_rule_deleted.v1.avsc"),
    schema_file!("SilenceCreated", 1, "silence_created.v1.avsc"),
    schema_file!("SilenceDeleted", 1, "silence_deleted.v1.avsc"),
    schema_file!("AlertFired", 1, "alert_fired.v1.avsc"),
    schema_file!("AlertResolved", 1, "alert_resolved.v1.avsc"),
    schema_file!("TokenIssued", 1, "token_issued.v1.avsc"),
    schema_file!("TokenRevoked", 1, "token_revoked.v1.avsc"),
    schema_file!("TokenUsed", 1, "token_used.v1.avsc"),
    schema_file!("EnrollmentIssued", 1, "enrollment_issued.v1.avsc"),
    schema_file!("EnrollmentUsed", 1, "enrollment_used.v1.avsc"),
    schema_file!("EnrollmentRevoked", 1, "enrollment_revoked.v1.avsc"),
    schema_file!(
        "NodeCredentialsIssued",
        1,
        "node_credentials_issued.v1.avsc"
    ),
    schema_file!("NodeRevoked", 1, "node_revoked.v1.avsc"),
    schema_file!("AuditRecorded", 1, "audit_recorded.v1.avsc"),
    schema_file!(
        "RemediationPolicySaved",
        1,
        "remediation_policy_saved.v1.avsc"
    ),
    schema_file!(
        "RemediationPolicyDeleted",
        1,
        "remediation_policy_deleted.v1.avsc"
    ),
    schema_file!("RemediationRecorded", 1, "remediation_recorded.v1.avsc"),
    schema_file!("HealthCheckCompleted", 1, "health_check_completed.v1.avsc"),
];

/// A parsed schema with its 8-byte CRC-64-AVRO (Rabin) fingerprint.
#[derive(Debug)]
pub struct Registered {
    pub file: SchemaFile,
    pub schema: Schema,
    pub fingerprint: [u8; 8],
    /// The same schema for `serde_avro_fast`, which decodes straight into the Rust type (no
    /// intermediate value tree): used when writer and reader versions are the same.
    #[cfg(not(target_arch = "wasm32"))]
    pub fast: serde_avro_fast::Schema,
}

/// All released schemas, parsed once.
pub struct Registry {
    all: Vec<Registered>,
    by_fingerprint: HashMap<[u8; 8], usize>,
}

impl Registry {
    fn build() -> Self {
        let mut all = Vec::with_capacity(RELEASED.len());
        let mut by_fingerprint = HashMap::new();
        for (i, file) in RELEASED.iter().enumerate() {
            // The files are compiled in and parsed by the tests; a failure here is a build defect.
            #[allow(clippy::expect_used)]
            let schema = Schema::parse_str(file.text).expect("released schema must parse");
            let mut fingerprint = [0u8; 8];
            fingerprint.copy_from_slice(&schema.fingerprint::<Rabin>().bytes);
            by_fingerprint.insert(fingerprint, i);
            all.push(Registered {
                file: *file,
                schema,
                fingerprint,
                #[cfg(not(target_arch = "wasm32"))]
                #[allow(clippy::expect_used)]
                fast: file.text.parse().expect("released schema must parse"),
            });
        }
        Self {
            all,
            by_fingerprint,
        }
    }

    /// The schema written with this fingerprint, if released.
    pub fn by_fingerprint(&self, fingerprint: &[u8; 8]) -> Option<&Registered> {
        self.by_fingerprint.get(fingerprint).map(|&i| &self.all[i])
    }

    /// The schema of `name` at `version`, if released.
    pub fn get(&self, name: &str, version: i32) -> Option<&Registered> {
        self.all
            .iter()
            .find(|r| r.file.name == name && r.file.version == version)
    }

    /// All released schemas.
    pub fn all(&self) -> &[Registered] {
        &self.all
    }
}

/// The process-wide registry.
pub fn registry() -> &'static Registry {
    static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::build);
    &REGISTRY
}

/// Test helper: `event` validates against its registered schema, the codec writes the same
/// bytes as apache-avro's generic encoding, and they decode to `event` with the header naming
/// it.
#[cfg(test)]
pub(crate) fn assert_round_trips<E: crate::events::Event + PartialEq + std::fmt::Debug>(event: &E) {
    use crate::codec::{decode, encode, written_as};
    let reg = registry().get(E::NAME, E::VERSION).expect("registered");
    let value = apache_avro::to_value(event).expect("to_value");
    assert!(value.validate(&reg.schema), "{} does not validate", E::NAME);
    let generic = apache_avro::to_avro_datum(&reg.schema, value).expect("datum");
    let bytes = encode(event).expect("encode");
    assert_eq!(
        &bytes[crate::codec::HEADER_LEN..],
        &generic[..],
        "{}: the codec and the generic encoding differ",
        E::NAME
    );
    assert_eq!(written_as(&bytes).expect("header"), (E::NAME, E::VERSION));
    assert_eq!(&decode::<E>(&bytes).expect("decode"), event);
}

#[cfg(test)]
mod tests {
    use super::*;
    use apache_avro::schema_compatibility::SchemaCompatibility;

    #[test]
    fn every_released_schema_parses_and_names_its_record() {
        for r in registry().all() {
            match &r.schema {
                Schema::Record(rec) => assert_eq!(rec.name.name, r.file.name, "{}", r.file.file),
                other => panic!("{} is not a record: {other:?}", r.file.file),
            }
            assert!(
                r.file.file.ends_with(&format!(".v{}.avsc", r.file.version)),
                "{} does not carry its version in its file name",
                r.file.file
            );
        }
        let fingerprints: std::collections::HashSet<_> =
            registry().all().iter().map(|r| r.fingerprint).collect();
        assert_eq!(
            fingerprints.len(),
            RELEASED.len(),
            "two schemas share a fingerprint"
        );
    }

    /// Each version must be readable by the next one and the next one's events by the previous
    /// reader (full compatibility), so producers and consumers can be upgraded in any order.
    #[test]
    fn consecutive_versions_are_compatible_both_ways() {
        let mut checked = 0;
        for pair in RELEASED.windows(2) {
            let (old, new) = (&pair[0], &pair[1]);
            if old.name != new.name {
                continue;
            }
            assert_eq!(new.version, old.version + 1, "{} skips a version", new.file);
            let old_s = &registry().get(old.name, old.version).expect("old").schema;
            let new_s = &registry().get(new.name, new.version).expect("new").schema;
            SchemaCompatibility::can_read(old_s, new_s)
                .unwrap_or_else(|e| panic!("{} cannot read {}: {e}", new.file, old.file));
            SchemaCompatibility::can_read(new_s, old_s)
                .unwrap_or_else(|e| panic!("{} cannot read {}: {e}", old.file, new.file));
            checked += 1;
        }
        let pairs = RELEASED
            .windows(2)
            .filter(|p| p[0].name == p[1].name)
            .count();
        assert_eq!(checked, pairs);
    }

    /// The compatibility check rejects a breaking change and accepts an additive one, so the test
    /// above fails when a new version breaks old readers.
    #[test]
    fn compatibility_check_catches_breaking_changes() {
        let v1 = &registry().get("HeartbeatRecorded", 1).expect("v1").schema;
        let v1_text = RELEASED[0].text;
        let added_with_default = v1_text.replacen(
            r#"{"name": "seq", "type": "long""#,
            r#"{"name": "boot_id", "type": "string", "default": ""},
    {"name": "seq", "type": "long""#,
            1,
        );
        let added = Schema::parse_str(&added_with_default).expect("parse additive");
        SchemaCompatibility::mutual_read(v1, &added).expect("additive field with default");

        let retyped = v1_text.replacen(
            r#""name": "seq", "type": "long""#,
            r#""name": "seq", "type": "string""#,
            1,
        );
        let retyped = Schema::parse_str(&retyped).expect("parse retyped");
        assert!(SchemaCompatibility::can_read(v1, &retyped).is_err());

        let added_no_default = v1_text.replacen(
            r#"{"name": "seq", "type": "long""#,
            r#"{"name": "boot_id", "type": "string"},
    {"name": "seq", "type": "long""#,
            1,
        );
        let added_no_default = Schema::parse_str(&added_no_default).expect("parse");
        assert!(SchemaCompatibility::can_read(v1, &added_no_default).is_err());
    }
}
