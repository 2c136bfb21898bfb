//! How a nats-server started by this crate is set up: JetStream, leaf nodes, cluster routes,
//! TLS, who may connect, and the message size every Nerve deployment needs.

use std::path::PathBuf;

/// The largest message the nats-server this module runs accepts (task requests carry their
/// expected node list). Production servers need the same (`max_payload` in nats-server.conf).
pub const MAX_PAYLOAD_BYTES: u64 = 16 << 20;

/// How [`NatsServer::start_with`] sets a nats-server up.
#[derive(Debug, Clone)]
pub struct NatsOptions {
    /// JetStream on, storing under the server's directory.
    pub jetstream: bool,
    /// Accept leaf node connections on this port of 127.0.0.1.
    pub leafnode_port: Option<u16>,
    /// Run as a leaf node of the server accepting leaf nodes on this port of 127.0.0.1: its
    /// clients' messages (and JetStream publish acks) flow through to that hub.
    pub hub_leafnode_port: Option<u16>,
    /// Clients must speak TLS, to this certificate and key (PEM files).
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Config lines that set how clients authenticate (the operator, system account and
    /// resolver of decentralized JWT auth: `nerve_ingest::authority`); `None`: anyone connects.
    pub auth: Option<String>,
    /// A member of a JetStream cluster (routes on 127.0.0.1).
    pub cluster: Option<ClusterMember>,
}

/// One server of a JetStream cluster, as `infra/nats/cluster/` sets one up.
#[derive(Debug, Clone)]
pub struct ClusterMember {
    /// Its name: unique in the cluster (JetStream names stream leaders by it).
    pub server_name: String,
    pub cluster_name: String,
    /// Where it listens for its peers.
    pub route_port: u16,
    /// Every member's route port (its own included: nats-server skips itself).
    pub route_ports: Vec<u16>,
}

impl Default for NatsOptions {
    fn default() -> Self {
        Self {
            jetstream: true,
            leafnode_port: None,
            hub_leafnode_port: None,
            tls: None,
            auth: None,
            cluster: None,
        }
    }
}

impl NatsOptions {
    /// The configuration file's text.
    pub(super) fn config(&self) -> String {
        // A task request lists every expected node: 100,000 ids are ≈ 3.7 MB, past the 1 MB
        // default message size.
        let mut conf = format!("max_payload: {MAX_PAYLOAD_BYTES}\n");
        if let Some(port) = self.leafnode_port {
            conf += &format!("leafnodes {{ listen: \"127.0.0.1:{port}\" }}\n");
        }
        if let Some(port) = self.hub_leafnode_port {
            conf += &format!(
                "leafnodes {{ remotes: [ {{ url: \"nats-leaf://127.0.0.1:{port}\" }} ] }}\n"
            );
        }
        if let Some((cert, key)) = &self.tls {
            conf += &format!(
                "tls {{ cert_file: {:?}\n key_file: {:?} }}\n",
                cert.display().to_string(),
                key.display().to_string()
            );
        }
        if let Some(c) = &self.cluster {
            let routes: Vec<String> = c
                .route_ports
                .iter()
                .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
                .collect();
            conf += &format!(
                "server_name: {:?}\ncluster {{ name: {:?}\n listen: \"127.0.0.1:{}\"\n routes: [{}] }}\n",
                c.server_name,
                c.cluster_name,
                c.route_port,
                routes.join(", ")
            );
        }
        if let Some(auth) = &self.auth {
            conf += auth;
        }
        conf
    }
}
