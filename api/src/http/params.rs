//! The path parameters of the routes, one type per shape: the handlers extract them
//! (`ApiPath<TaskPath>`), and the OpenAPI document describes them from the same types, with
//! the form each takes: a node id (1 to 64 of `[A-Za-z0-9_-]`), a UUID, or an id or name (1 to
//! 64 of `[A-Za-z0-9._-]`).

use serde::Deserialize;
use utoipa::IntoParams;

macro_rules! path_params {
    ($($(#[$doc:meta])* $name:ident { $($(#[$fdoc:meta])* $field:ident $([$($feature:tt)+])?;)+ })+) => {$(
        $(#[$doc])*
        #[derive(Debug, Deserialize, IntoParams)]
        #[into_params(parameter_in = Path)]
        pub(super) struct $name {
            $($(#[$fdoc])* $(#[param($($feature)+)])? pub $field: String,)+
        }
    )+};
}

path_params! {
    /// `{id}` of a node.
    NodePath {
        /// Node id.
        id [pattern = "^[A-Za-z0-9_-]{1,64}$"];
    }
    /// `{id}` of a task.
    TaskPath {
        /// Task id.
        id [format = Uuid];
    }
    /// `{id}` of a task and `{node}` of one of its nodes.
    TaskNodePath {
        /// Task id.
        id [format = Uuid];
        /// Node id.
        node [pattern = "^[A-Za-z0-9_-]{1,64}$"];
    }
    /// `{id}` of a cluster.
    ClusterPath {
        /// Cluster id or name.
        id [pattern = "^[A-Za-z0-9._-]{1,64}$"];
    }
    /// `{id}` of a cluster and `{node}` of a node.
    ClusterNodePath {
        /// Cluster id or name.
        id [pattern = "^[A-Za-z0-9._-]{1,64}$"];
        /// Node id.
        node [pattern = "^[A-Za-z0-9_-]{1,64}$"];
    }
    /// `{id}` of an alert rule.
    RulePath {
        /// Rule id or name.
        id [pattern = "^[A-Za-z0-9._-]{1,64}$"];
    }
    /// `{id}` of a notification channel.
    ChannelPath {
        /// Channel id or name.
        id [pattern = "^[A-Za-z0-9._-]{1,64}$"];
    }
    /// `{id}` of a silence.
    SilencePath {
        /// Silence id.
        id;
    }
    /// `{id}` of a remediation policy.
    PolicyPath {
        /// Policy id or name.
        id;
    }
    /// `{id}` of an API token.
    TokenPath {
        /// Token id.
        id;
    }
    /// `{id}` of an enrollment token.
    EnrollmentPath {
        /// Enrollment id.
        id;
    }
    /// `{node}` of an enrolled node.
    CredentialsPath {
        /// Node id.
        node [pattern = "^[A-Za-z0-9_-]{1,64}$"];
    }
}
