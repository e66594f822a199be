//! Ironic's provision state machine: states, events and the transition table.

pub mod machine;

pub use machine::{Event, InvalidTransition, ProvisionState, Verb};
