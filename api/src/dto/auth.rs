//! Who may do what: roles and rights (shared with the console, which offers only what the
//! signed-in role may do), tokens as the API shows them, and the audit trail's query and rows.

use serde::{Deserialize, Serialize};

/// What a route needs. Every route names one (`crate::http::ROUTES`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Right {
    /// No token needed (`GET /api/v1/health`, the metrics scrape).
    Public,
    /// Reading anything but secrets.
    Read,
    /// Tasks, labels, clusters, silences.
    Operate,
    /// Everything: tokens, enrollment, alert rules, channels.
    Admin,
    /// Enrolling a node: only an enrollment token has it (and it has nothing else).
    Enroll,
}

/// A caller's role: an operator token's (viewer, operator, admin), or one of the two roles
/// that are not people — an enrollment token's, and a node's (renewing its credentials).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Viewer,
    Operator,
    Admin,
    Enrollment,
    Node,
}

impl Role {
    /// The roles an operator token may have.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
            Role::Enrollment => "enrollment",
            Role::Node => "node",
        }
    }

    /// An operator token's role by name.
    pub fn parse(text: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == text)
    }

    /// Whether this role has `right`: viewer reads, operator also operates, admin does all
    /// but enroll; an enrollment token only enrolls; a node has no right on the API.
    pub fn allows(self, right: Right) -> bool {
        match (self, right) {
            (_, Right::Public) => true,
            (Role::Enrollment, r) => r == Right::Enroll,
            (Role::Node, _) | (_, Right::Enroll) => false,
            (_, Right::Read) => true,
            (r, Right::Operate) => r == Role::Operator || r == Role::Admin,
            (r, Right::Admin) => r == Role::Admin,
        }
    }
}

/// Who is calling: the token's id, name and role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Identity {
    pub token_id: String,
    pub name: String,
    pub role: Role,
}

impl Identity {
    /// How the identity is written into `requested_by` fields: `name/token_id`.
    pub fn who(&self) -> String {
        format!("{}/{}", self.name, self.token_id)
    }
}

/// `POST /api/v1/tokens`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CreateToken {
    /// Who or what the token is for: 1 to 64 printable characters.
    pub name: String,
    /// `viewer`, `operator` or `admin`.
    pub role: String,
    /// Lifetime; absent: the configured default (90 days); never more than the configured
    /// maximum.
    pub ttl_secs: Option<u64>,
}

/// `POST /api/v1/tokens/{id}/rotate`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct RotateToken {
    pub ttl_secs: Option<u64>,
}

/// A token as issued: the only answer that ever holds its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenIssued {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub expires_at: String,
    /// `nerve_<id>_<secret>`: shown once, stored nowhere.
    pub token: String,
}

/// A token as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenInfo {
    pub token_id: String,
    pub name: String,
    pub role: Role,
    pub issued_at: String,
    pub issued_by: String,
    pub expires_at: String,
    /// Empty when never used.
    pub last_used_at: String,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

/// `GET /api/v1/audit`: every filter optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams), into_params(parameter_in = Query))]
#[serde(default, deny_unknown_fields)]
pub struct AuditQuery {
    /// A token id or name.
    pub actor: Option<String>,
    /// `METHOD route` (`POST /api/v1/clusters`), or a route template alone.
    pub action: Option<String>,
    /// An id the call was about.
    pub target: Option<String>,
    /// `applied`, `answered` or `denied`.
    pub outcome: Option<String>,
    /// RFC 3339 or Unix seconds.
    pub from: Option<String>,
    pub to: Option<String>,
    pub limit: Option<u32>,
    pub offset: Option<u32>,
}

/// One audited call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub at: String,
    pub instance_id: String,
    pub seq: u64,
    pub actor_token_id: String,
    pub actor_name: String,
    pub actor_role: String,
    pub method: String,
    pub route: String,
    pub targets: Vec<String>,
    pub body_sha256: String,
    pub peer: String,
    pub user_agent: String,
    pub status: u16,
    pub outcome: String,
}

/// A page of the audit trail, newest first.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total: u64,
    pub limit: u32,
    pub offset: u32,
}

/// `POST /api/v1/enrollments`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default, deny_unknown_fields)]
pub struct CreateEnrollment {
    /// What it is for (a rack, a batch of machines): 1 to 64 printable characters.
    pub name: String,
    /// How many nodes may enroll with it; absent: 1.
    pub uses: Option<u32>,
    /// Lifetime; absent: the configured default (1 hour); never more than the configured
    /// maximum.
    pub ttl_secs: Option<u64>,
}

/// An enrollment token as issued: the only answer that ever holds its secret.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentIssued {
    pub enrollment_id: String,
    pub name: String,
    pub uses: u32,
    pub expires_at: String,
    /// `nerve_<id>_<secret>`, for `nerve agent --enroll`: shown once, stored nowhere.
    pub token: String,
}

/// An enrollment token as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentInfo {
    pub enrollment_id: String,
    pub name: String,
    pub uses: u32,
    pub used: u32,
    pub issued_at: String,
    pub issued_by: String,
    pub expires_at: String,
    /// `active`, `used_up`, `expired` or `revoked`.
    pub state: String,
}

/// A node's NATS credentials as listed (`GET /api/v1/credentials`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeCredentialInfo {
    pub node_id: String,
    /// The node's NATS user public key (its private key never left the node).
    pub public_key: String,
    pub enrolled_at: String,
    /// The enrollment token it enrolled with.
    pub enrollment_id: String,
    /// When its current credentials expire.
    pub expires_at: String,
    pub renewals: u32,
    /// `active`, `expired` or `revoked`.
    pub state: String,
}

/// `DELETE /api/v1/enrollments/{id}`: the enrollment token is revoked.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EnrollmentRevoked {
    pub enrollment_id: String,
    /// Always `revoked`.
    pub state: String,
}
