//! Tenant network isolation (issue 19): the switches that carry the nodes'
//! ports and the VLANs the ports are moved between.
//!
//! - [`config`]: `[switches.<name>]`, `[networks.<name>]` and
//!   `[network_roles]`, checked at start.
//! - [`switch`]: the switch-driver trait and the Open vSwitch driver.
//! - [`tenancy`]: where a node's ports belong in each phase and on the
//!   tenant networks, and the isolation record; the conductor applies it
//!   (docs/network.md, "Switches and networks").

pub mod config;
pub mod switch;
pub mod tenancy;
