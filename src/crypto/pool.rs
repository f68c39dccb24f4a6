//! Where CPU-heavy cryptography runs: on tokio's blocking pool, at most two jobs per core at
//! once. Without the bound, 64 concurrent direct messages start 64 blocking threads, each
//! with its own allocator arena, which costs memory and context switches and encrypts no
//! faster on two cores.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::{ServiceError, ServiceResult};

/// The bounded runner (one per server).
pub struct CryptoPool {
    slots: Arc<Semaphore>,
}

impl Default for CryptoPool {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        Self {
            slots: Arc::new(Semaphore::new((cores * 2).max(4))),
        }
    }
}

impl CryptoPool {
    /// Runs `work` off the async executor once a slot is free. The slot goes with the job:
    /// a caller that gives up (its client went away) does not free it while the job still
    /// runs.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> ServiceResult<T> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::internal("the crypto pool is closed"))?;
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work()
        })
        .await
        .map_err(ServiceError::internal)
    }
}
