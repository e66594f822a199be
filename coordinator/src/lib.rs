//! `ingot-coordinator`: an Ironic-compatible bare-metal coordinator.
//!
//! - [`api`]: Ironic's REST API v1 (axum), microversions and error envelope.
//! - [`conductor`]: the one owner of node lifecycle state; per-node handler.
//! - [`state`]: Ironic's provision state machine.
//! - [`db`]: persistence on SQLite or PostgreSQL (sqlx, runtime queries).
//! - [`power`]: the `PowerDriver` trait and its drivers.
//! - [`agent_client`]: the client of the agent's command API.
//! - [`network`]: switches and networks for tenant isolation (Open vSwitch driver).
//! - [`metrics`]: Prometheus metrics (`GET /metrics` on its own listener).

pub mod agent_client;
pub mod api;
pub mod auth;
pub mod cluster;
pub mod conductor;
pub mod config;
pub mod configdrive;
pub mod console;
pub mod db;
pub mod dhcp;
pub mod drivers;
pub mod glance;
pub mod http_server;
pub mod image_cache;
pub mod logging;
pub mod metrics;
pub mod model;
pub mod netboot;
pub mod network;
pub mod power;
pub mod server;
pub mod state;
pub mod temp_url;
pub mod tftp;
pub mod tls;
