//! The queued jobs, one module each: its payload (declared with `crate::queue::payload!`, the
//! queue's one name beside it) and what a run of it does. A service queues a job with
//! `Queue::enqueue`; the worker runs every kind through [`Job::run`]. The sweep, run on a timer,
//! re-enqueues whatever a lost task or a killed worker left behind.
//!
//! A file's life: `validate` (quarantine → validated) → `encrypt` (→ ready) → `notify` (each
//! pending share's link emailed). A master-key rotation: `rewrap`.

use std::future::Future;

use crate::queue::Payload;
use crate::{Core, JobError};

pub mod encrypt;
mod lease;
pub mod notify;
mod quarantine;
pub mod rewrap;
pub mod sweep;
pub mod validate;

/// A kind of queued job as the worker runs it.
pub trait Job: Payload {
    /// Does the work; `attempt` counts deliveries of this task from 1. Every run re-reads its
    /// rows and moves them with conditional updates, so a repeated delivery is a no-op.
    fn run(self, core: &Core, attempt: usize) -> impl Future<Output = Result<(), JobError>> + Send;
}

#[cfg(test)]
mod tests;
