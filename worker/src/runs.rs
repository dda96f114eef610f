//! What each queued job kind runs: the service call that does the work. `handle::<J>` is
//! every kind's handler.

use std::future::Future;

use apalis::prelude::*;
use coffer_core::queue::{EncryptFile, Job, RewrapKeys, SendShareEmail, ValidateFile};
use coffer_core::services::{jobs, keys, shares};
use coffer_core::{Core, JobError};

use super::run_job;

/// A kind of job as this worker runs it: the service call that does the work.
pub(super) trait Runs: Job {
    fn run(self, core: &Core, attempt: usize) -> impl Future<Output = Result<(), JobError>> + Send;
}

impl Runs for ValidateFile {
    async fn run(self, core: &Core, _attempt: usize) -> Result<(), JobError> {
        jobs::validate(core, self.file_id).await
    }
}

impl Runs for EncryptFile {
    async fn run(self, core: &Core, _attempt: usize) -> Result<(), JobError> {
        jobs::encrypt(core, self.file_id).await
    }
}

impl Runs for SendShareEmail {
    async fn run(self, core: &Core, attempt: usize) -> Result<(), JobError> {
        shares::send_email(core, self.share_id, attempt).await
    }
}

impl Runs for RewrapKeys {
    async fn run(self, core: &Core, _attempt: usize) -> Result<(), JobError> {
        keys::run_rotation(core, self.rotation_id).await
    }
}

/// The handler of every queued job kind.
pub(super) async fn handle<J: Runs>(
    job: J,
    core: Data<Core>,
    attempt: Attempt,
) -> Result<(), BoxDynError> {
    let (id, request_id) = (job.subject(), job.request_id());
    let work = job.run(&core, attempt.current());
    run_job(&core, J::NAME, id, request_id, &attempt, work).await
}
