//! sea-orm entities: table shapes only, no logic.

pub mod audit_event;
pub mod file;
pub mod session;
pub mod share;
pub mod user;
