//! [`CancelToken`]: a cloneable handle that stops running sandboxes from any thread. A run
//! registers a wake-up pipe with the token so cancellation interrupts its `poll` at once.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

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
    /// Tokens made by [`CancelToken::child`]: cancelled with this one.
    children: Mutex<Vec<Weak<Inner>>>,
}

impl CancelToken {
    /// A token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token cancelled when this one is (now or later), and cancellable on its own
    /// without cancelling this one: one attempt of a larger job.
    #[must_use]
    pub fn child(&self) -> Self {
        let child = Self::new();
        self.inner
            .children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::downgrade(&child.inner));
        if self.is_cancelled() {
            child.cancel();
        }
        child
    }

    /// Cancels every run using this token (now and later): their process trees are killed.
    /// Its children are cancelled too.
    pub fn cancel(&self) {
        self.inner.is_cancelled.store(true, Ordering::SeqCst);
        let children: Vec<Arc<Inner>> = self
            .inner
            .children
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .filter_map(|c| c.upgrade())
            .collect();
        for inner in children {
            Self { inner }.cancel();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_child_falls_with_its_parent_but_not_the_parent_with_it() {
        let parent = CancelToken::new();
        let first = parent.child();
        first.cancel();
        assert!(first.is_cancelled());
        assert!(!parent.is_cancelled(), "a child's cancel stays its own");
        let second = parent.child();
        assert!(!second.is_cancelled());
        parent.cancel();
        assert!(
            second.is_cancelled(),
            "the parent's cancel reaches its children"
        );
        assert!(
            parent.child().is_cancelled(),
            "a child of a cancelled token starts cancelled"
        );
    }
}
