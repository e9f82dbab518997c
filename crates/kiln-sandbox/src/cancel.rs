//! [`CancelToken`]: a cloneable handle that stops running sandboxes from any thread. A run
//! registers a wake-up pipe with the token so cancellation interrupts its `poll` at once.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

/// Cancels the runs it was given to; clones share the state.
#[derive(Debug, Clone, Default)]
pub struct CancelToken {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    is_cancelled: AtomicBool,
    next_id: AtomicU64,
    wakers: Mutex<Vec<(u64, OwnedFd)>>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels every run using this token (now and later): their process trees are killed.
    pub fn cancel(&self) {
        self.inner.is_cancelled.store(true, Ordering::SeqCst);
        let wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for (_, fd) in wakers.iter() {
            // A full pipe or a closed reader both mean the run is already awake or gone.
            let _ = rustix::io::write(fd, &[1]);
        }
    }

    /// True once [`cancel`](Self::cancel) was called.
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled.load(Ordering::SeqCst)
    }

    /// Registers the write end of a run's wake-up pipe until the returned guard is dropped.
    pub(crate) fn register(&self, waker: OwnedFd) -> Registration {
        let id = self.inner.next_id.fetch_add(1, Ordering::SeqCst);
        let mut wakers = self
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if self.is_cancelled() {
            let _ = rustix::io::write(&waker, &[1]);
        }
        wakers.push((id, waker));
        Registration {
            token: self.clone(),
            id,
        }
    }
}

/// Unregisters a run's waker when the run ends.
#[derive(Debug)]
pub(crate) struct Registration {
    token: CancelToken,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut wakers = self
            .token
            .inner
            .wakers
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        wakers.retain(|(id, _)| *id != self.id);
    }
}
