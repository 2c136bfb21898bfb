//! System tests of the whole path against real services: a private nats-server per test and a
//! fresh database on a real ClickHouse, real `nerve` processes where a process boundary matters.

mod agent_buffer;
mod agent_e2e;
mod agent_inventory;
mod alerts;
mod analytics;
mod applied;
mod archive;
mod archive_s3;
mod auth;
mod browser;
mod ch_cluster;
mod channels;
mod clickhouse_users;
mod clusters;
mod config_cli;
mod dev;
mod drill;
mod enrollment;
mod fleet_list;
mod gpu_node;
mod guard_rails;
mod lease;
mod liveness;
mod maintenance;
mod offers;
mod point_in_time;
mod projector;
mod remediation;
mod replay;
mod retention;
mod secrets;
mod storm;
mod support;
mod tasks;
mod tls;
