//! The hand-off between a camera's GStreamer streaming thread and analysis.
//!
//! Frames are perishable: a live camera's queue is small and, when full, drops the *oldest*
//! frame and counts it, so a slow consumer always sees the newest picture and latency never
//! builds up. A replay (file decoded as fast as possible) instead blocks the producer so every
//! frame is analysed.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use tokio::sync::Notify;

/// What a full queue does with a new item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Drop the oldest queued item and count it (live cameras).
    DropOldest,
    /// Wait for room (replays, where every frame counts).
    Block,
}

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
}

#[derive(Debug)]
struct Shared<T> {
    inner: Mutex<Inner<T>>,
    capacity: usize,
    policy: FullPolicy,
    /// Wakes the async consumer.
    ready: Notify,
    /// Wakes a blocked producer.
    room: Condvar,
    dropped: AtomicU64,
    taken: AtomicU64,
}

impl<T> Shared<T> {
    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        // A panic while holding this lock leaves only a VecDeque behind; keep going.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Producer side; cheap to clone.
#[derive(Debug)]
pub struct QueueSender<T> {
    shared: Arc<Shared<T>>,
}

impl<T> Clone for QueueSender<T> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
        }
    }
}

/// Consumer side.
#[derive(Debug)]
pub struct QueueReceiver<T> {
    shared: Arc<Shared<T>>,
}

/// What happened to a pushed item.
#[derive(Debug, PartialEq, Eq)]
pub enum Pushed {
    Queued,
    /// Queued after dropping the oldest item.
    DroppedOldest,
    /// The receiver is gone; the item was discarded.
    Closed,
}

/// A bounded queue with the given full policy. `capacity` is at least 1.
pub fn bounded<T>(capacity: usize, policy: FullPolicy) -> (QueueSender<T>, QueueReceiver<T>) {
    let shared = Arc::new(Shared {
        inner: Mutex::new(Inner {
            items: VecDeque::with_capacity(capacity.max(1)),
            closed: false,
        }),
        capacity: capacity.max(1),
        policy,
        ready: Notify::new(),
        room: Condvar::new(),
        dropped: AtomicU64::new(0),
        taken: AtomicU64::new(0),
    });
    (
        QueueSender {
            shared: shared.clone(),
        },
        QueueReceiver { shared },
    )
}

impl<T> QueueSender<T> {
    /// Pushes from a synchronous (GStreamer) thread. With [`FullPolicy::Block`] this waits
    /// until the consumer makes room or closes.
    pub fn push(&self, item: T) -> Pushed {
        let s = &self.shared;
        let mut inner = s.lock();
        let mut outcome = Pushed::Queued;
        loop {
            if inner.closed {
                return Pushed::Closed;
            }
            if inner.items.len() < s.capacity {
                break;
            }
            match s.policy {
                FullPolicy::DropOldest => {
                    inner.items.pop_front();
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    outcome = Pushed::DroppedOldest;
                    break;
                }
                FullPolicy::Block => {
                    inner = s.room.wait(inner).unwrap_or_else(|p| p.into_inner());
                }
            }
        }
        inner.items.push_back(item);
        drop(inner);
        s.ready.notify_one();
        outcome
    }

    /// Ends the stream: the receiver gets what is queued, then `None`.
    pub fn close(&self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_one();
        self.shared.room.notify_all();
    }

    /// Items dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Items taken by the consumer so far.
    pub fn taken(&self) -> u64 {
        self.shared.taken.load(Ordering::Relaxed)
    }
}

impl<T> QueueReceiver<T> {
    /// The next item, waiting for one; `None` once closed and drained.
    pub async fn recv(&mut self) -> Option<T> {
        loop {
            let shared = self.shared.clone();
            let notified = shared.ready.notified();
            if let Some(item) = self.try_recv() {
                return Some(item);
            }
            if self.shared.lock().closed {
                return None;
            }
            notified.await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<T> {
        let mut inner = self.shared.lock();
        let item = inner.items.pop_front();
        drop(inner);
        if item.is_some() {
            self.shared.taken.fetch_add(1, Ordering::Relaxed);
            self.shared.room.notify_one();
        }
        item
    }

    /// Items waiting now.
    pub fn len(&self) -> usize {
        self.shared.lock().items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Items dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }

    /// Items taken by the consumer so far.
    pub fn taken(&self) -> u64 {
        self.shared.taken.load(Ordering::Relaxed)
    }
}

impl<T> Drop for QueueReceiver<T> {
    fn drop(&mut self) {
        let mut inner = self.shared.lock();
        inner.closed = true;
        inner.items.clear();
        drop(inner);
        self.shared.room.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn drop_oldest_keeps_the_newest_and_counts() {
        let (tx, mut rx) = bounded(2, FullPolicy::DropOldest);
        assert_eq!(tx.push(1), Pushed::Queued);
        assert_eq!(tx.push(2), Pushed::Queued);
        assert_eq!(tx.push(3), Pushed::DroppedOldest);
        assert_eq!(rx.try_recv(), Some(2));
        assert_eq!(rx.try_recv(), Some(3));
        assert_eq!(rx.try_recv(), None);
        assert_eq!(rx.dropped(), 1);
        assert_eq!(rx.taken(), 2);
    }

    #[tokio::test]
    async fn recv_ends_after_close_and_drain() {
        let (tx, mut rx) = bounded(4, FullPolicy::DropOldest);
        tx.push(7);
        tx.close();
        assert_eq!(rx.recv().await, Some(7));
        assert_eq!(rx.recv().await, None);
        assert_eq!(tx.push(8), Pushed::Closed);
    }

    #[tokio::test]
    async fn recv_wakes_on_push_from_another_thread() {
        let (tx, mut rx) = bounded(1, FullPolicy::DropOldest);
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(20));
            tx.push(42)
        });
        assert_eq!(rx.recv().await, Some(42));
        t.join().expect("producer thread");
    }

    #[test]
    fn block_policy_loses_nothing() {
        let (tx, mut rx) = bounded(2, FullPolicy::Block);
        let producer = std::thread::spawn(move || {
            for i in 0..1000 {
                assert_eq!(tx.push(i), Pushed::Queued);
            }
            tx.close();
        });
        let mut got = Vec::new();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            while let Some(i) = rx.recv().await {
                got.push(i);
            }
        });
        producer.join().expect("producer");
        assert_eq!(got, (0..1000).collect::<Vec<_>>());
        assert_eq!(rx.dropped(), 0);
    }

    #[test]
    fn dropping_the_receiver_unblocks_the_producer() {
        let (tx, rx) = bounded(1, FullPolicy::Block);
        tx.push(1);
        let producer = std::thread::spawn(move || tx.push(2));
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(rx);
        assert_eq!(producer.join().expect("producer"), Pushed::Closed);
    }

    proptest! {
        /// Whatever the interleaving, a drop-oldest queue never holds more than its capacity,
        /// hands out items in order, and accounts for every item: taken + dropped + left = pushed.
        #[test]
        fn drop_oldest_accounts_for_everything(cap in 1usize..8, ops in proptest::collection::vec(any::<bool>(), 0..200)) {
            let (tx, mut rx) = bounded(cap, FullPolicy::DropOldest);
            let mut pushed = 0u64;
            let mut last = None;
            for push in ops {
                if push {
                    tx.push(pushed);
                    pushed += 1;
                } else if let Some(v) = rx.try_recv() {
                    prop_assert!(last.is_none_or(|l| v > l));
                    last = Some(v);
                }
                prop_assert!(rx.len() <= cap);
            }
            prop_assert_eq!(rx.taken() + rx.dropped() + rx.len() as u64, pushed);
        }
    }
}
