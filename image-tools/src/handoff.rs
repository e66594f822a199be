//! A bounded queue between pipeline threads that parks a waiting thread at
//! once.
//!
//! crossbeam-channel (and std's `mpsc`, built on the same design) spin and
//! then call `sched_yield` before they park a thread that waits for an empty
//! or full channel. On an idle machine that saves a wake-up; on a busy one
//! every yield hands the core to another process, so the stage that should
//! run (the hash, on a verified write) waits longer although it does not use
//! more CPU: the write pipeline measured 2.1× sha256 alone next to a
//! CPU-bound process, 1.05× on a quiet machine. This queue is a `VecDeque`
//! under a `Mutex`, with a `Condvar` for each side: a thread that cannot go on
//! sleeps in the kernel until the other side moved, and a side is woken only
//! when a thread of it is actually waiting, so a stream that never stalls
//! makes no wake-up system calls at all.
//!
//! Semantics follow crossbeam's bounded channel: any number of senders and
//! receivers (both clone); `recv` fails once the queue is empty and every
//! sender is gone; `send` fails (handing the value back) once every receiver
//! is gone, and items still queued then are dropped, so pool buffers inside
//! them go home.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A queue of at most `capacity` items (at least 1), and its two ends.
pub fn bounded<T>(capacity: usize) -> (Sender<T>, Receiver<T>) {
    let inner = Arc::new(Inner {
        state: Mutex::new(State {
            queue: VecDeque::with_capacity(capacity.max(1)),
            capacity: capacity.max(1),
            senders: 1,
            receivers: 1,
            waiting_receivers: 0,
            waiting_senders: 0,
        }),
        not_empty: Condvar::new(),
        not_full: Condvar::new(),
    });
    (
        Sender {
            inner: inner.clone(),
        },
        Receiver { inner },
    )
}

struct Inner<T> {
    state: Mutex<State<T>>,
    /// Receivers wait here for an item (or for the last sender to go).
    not_empty: Condvar,
    /// Senders wait here for room (or for the last receiver to go).
    not_full: Condvar,
}

struct State<T> {
    queue: VecDeque<T>,
    capacity: usize,
    senders: usize,
    receivers: usize,
    /// Threads parked on `not_empty`: only then does a send notify.
    waiting_receivers: usize,
    /// Threads parked on `not_full`: only then does a receive notify.
    waiting_senders: usize,
}

impl<T> Inner<T> {
    /// The state; a panic elsewhere while holding the lock leaves the queue
    /// consistent (every update is a single push, pop or count), so a
    /// poisoned lock is used as it is.
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending end; clones share the queue.
pub struct Sender<T> {
    inner: Arc<Inner<T>>,
}

/// The receiving end; clones share the queue.
pub struct Receiver<T> {
    inner: Arc<Inner<T>>,
}

/// Every receiver is gone; the value that could not be sent.
#[derive(Debug, PartialEq, Eq)]
pub struct SendError<T>(pub T);

/// Why [`Receiver::recv_timeout`] returned no item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvTimeoutError {
    /// Nothing arrived in time.
    Timeout,
    /// The queue is empty and every sender is gone.
    Disconnected,
}

impl<T> Sender<T> {
    /// Queues `value`, sleeping while the queue is full. Fails, handing the
    /// value back, once every receiver is gone.
    pub fn send(&self, value: T) -> Result<(), SendError<T>> {
        let mut s = self.inner.lock();
        loop {
            if s.receivers == 0 {
                return Err(SendError(value));
            }
            if s.queue.len() < s.capacity {
                break;
            }
            s.waiting_senders += 1;
            s = self
                .inner
                .not_full
                .wait(s)
                .unwrap_or_else(PoisonError::into_inner);
            s.waiting_senders -= 1;
        }
        s.queue.push_back(value);
        let wake = s.waiting_receivers > 0;
        drop(s);
        if wake {
            self.inner.not_empty.notify_one();
        }
        Ok(())
    }
}

impl<T> Receiver<T> {
    /// The next item, sleeping while the queue is empty; `None` once it is
    /// empty and every sender is gone.
    pub fn recv(&self) -> Option<T> {
        self.recv_until(None).ok()
    }

    /// Like [`recv`](Self::recv), but gives up after `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<T, RecvTimeoutError> {
        self.recv_until(Instant::now().checked_add(timeout))
    }

    /// Every item until the queue is empty and every sender is gone.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        std::iter::from_fn(|| self.recv())
    }

    /// Waits for an item until `deadline` (`None`: for ever).
    fn recv_until(&self, deadline: Option<Instant>) -> Result<T, RecvTimeoutError> {
        let mut s = self.inner.lock();
        let value = loop {
            if let Some(v) = s.queue.pop_front() {
                break v;
            }
            if s.senders == 0 {
                return Err(RecvTimeoutError::Disconnected);
            }
            s.waiting_receivers += 1;
            s = match deadline {
                None => self
                    .inner
                    .not_empty
                    .wait(s)
                    .unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        s.waiting_receivers -= 1;
                        return Err(RecvTimeoutError::Timeout);
                    }
                    self.inner
                        .not_empty
                        .wait_timeout(s, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
            s.waiting_receivers -= 1;
        };
        let wake = s.waiting_senders > 0;
        drop(s);
        if wake {
            self.inner.not_full.notify_one();
        }
        Ok(value)
    }
}

impl<T> Clone for Sender<T> {
    fn clone(&self) -> Self {
        self.inner.lock().senders += 1;
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Clone for Receiver<T> {
    fn clone(&self) -> Self {
        self.inner.lock().receivers += 1;
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.senders -= 1;
        let last = s.senders == 0;
        drop(s);
        if last {
            self.inner.not_empty.notify_all();
        }
    }
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let mut s = self.inner.lock();
        s.receivers -= 1;
        // Dropped after the lock is released: an item may hold a pool buffer,
        // whose drop sends it home through another queue.
        let orphans = if s.receivers == 0 {
            std::mem::take(&mut s.queue)
        } else {
            VecDeque::new()
        };
        let last = s.receivers == 0;
        drop(s);
        if last {
            self.inner.not_full.notify_all();
        }
        drop(orphans);
    }
}

impl<T> std::fmt::Debug for Sender<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sender { .. }")
    }
}

impl<T> std::fmt::Debug for Receiver<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Receiver { .. }")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_arrive_in_order_and_the_queue_ends_with_its_senders() {
        let (tx, rx) = bounded(2);
        let producer = std::thread::spawn(move || {
            for i in 0..1000 {
                tx.send(i).unwrap();
            }
        });
        let got: Vec<i32> = rx.iter().collect();
        producer.join().unwrap();
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(rx.recv(), None);
    }

    #[test]
    fn a_full_queue_blocks_the_sender_until_an_item_is_taken() {
        let (tx, rx) = bounded(1);
        tx.send(1).unwrap();
        let sent = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = sent.clone();
        let t = std::thread::spawn(move || {
            tx.send(2).unwrap();
            flag.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert!(!sent.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(rx.recv(), Some(1));
        t.join().unwrap();
        assert_eq!(rx.recv(), Some(2));
    }

    #[test]
    fn sending_without_receivers_hands_the_value_back_and_drops_the_queue() {
        let (tx, rx) = bounded(4);
        let item = Arc::new(());
        tx.send(item.clone()).unwrap();
        drop(rx);
        // The queued clone was dropped with the last receiver.
        assert_eq!(Arc::strong_count(&item), 1);
        let back = Arc::new(());
        let Err(SendError(v)) = tx.send(back.clone()) else {
            panic!("sent without a receiver");
        };
        assert!(Arc::ptr_eq(&v, &back));
    }

    #[test]
    fn a_blocked_sender_fails_when_the_last_receiver_goes() {
        let (tx, rx) = bounded(1);
        tx.send(0).unwrap();
        let t = std::thread::spawn(move || tx.send(1));
        std::thread::sleep(Duration::from_millis(50));
        drop(rx);
        assert_eq!(t.join().unwrap(), Err(SendError(1)));
    }

    #[test]
    fn recv_timeout_times_out_and_sees_disconnection() {
        let (tx, rx) = bounded::<u8>(1);
        assert_eq!(
            rx.recv_timeout(Duration::from_millis(20)),
            Err(RecvTimeoutError::Timeout)
        );
        let tx2 = tx.clone();
        drop(tx);
        tx2.send(5).unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_millis(20)), Ok(5));
        drop(tx2);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(RecvTimeoutError::Disconnected)
        );
    }

    #[test]
    fn cloned_receivers_share_the_items() {
        let (tx, rx) = bounded(8);
        let rx2 = rx.clone();
        for i in 0..4 {
            tx.send(i).unwrap();
        }
        drop(tx);
        let mut got: Vec<i32> = rx.iter().take(2).chain(rx2.iter()).collect();
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2, 3]);
    }
}
