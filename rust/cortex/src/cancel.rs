//! A cancellation flag shared by a stream's owner and the worker generating for it.
//!
//! The worker checks it before every token; engines that wait (Pinky's per-token delay) wait on it, so a cancel
//! wakes them at once instead of after the delay.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Cheap to clone; all clones share one flag.
#[derive(Debug, Clone, Default)]
pub struct CancelToken(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    flag: AtomicBool,
    lock: Mutex<()>,
    wake: Condvar,
}

impl CancelToken {
    pub fn new() -> Self {
        Self::default()
    }

    /// Requests cancellation and wakes a worker waiting in [`CancelToken::sleep`].
    pub fn cancel(&self) {
        self.0.flag.store(true, Ordering::Release);
        // Taking the lock orders this notify after a sleeper's flag check, so the wake-up cannot be missed.
        let _guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        self.0.wake.notify_all();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.flag.load(Ordering::Acquire)
    }

    /// Sleeps for `duration` unless cancelled first. Returns true when cancelled.
    pub fn sleep(&self, duration: Duration) -> bool {
        if duration.is_zero() {
            return self.is_cancelled();
        }
        let deadline = Instant::now() + duration;
        let mut guard = self.0.lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.is_cancelled() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = match self.0.wake.wait_timeout(guard, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancel_wakes_a_sleeper_early() {
        let token = CancelToken::new();
        let other = token.clone();
        let started = Instant::now();
        let sleeper = std::thread::spawn(move || other.sleep(Duration::from_secs(30)));
        std::thread::sleep(Duration::from_millis(20));
        token.cancel();
        assert!(sleeper.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn sleep_runs_out_when_not_cancelled() {
        assert!(!CancelToken::new().sleep(Duration::from_millis(5)));
    }
}
