//! A multi-producer, single-consumer queue that allocates only while it holds items: the
//! peer's outbox (messages to write) and its handler queue (batches of received messages).
//!
//! tokio's unbounded channel allocates a 32-slot block up front, 2 KiB for the outbox alone,
//! which at 10,000 idle peers is 20 MB of memory nobody uses; this one holds a `VecDeque` that
//! is empty (unallocated) when idle and is released again after a burst.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};

use tokio::sync::Notify;

/// Items kept allocated after the queue drains; a larger buffer left by a burst is freed.
const RETAINED_CAPACITY: usize = 16;

/// See the module docs. `push` never blocks; `pop` waits for an item or for `close`.
#[derive(Debug)]
pub(crate) struct Queue<T> {
    inner: Mutex<Inner<T>>,
    ready: Notify,
}

#[derive(Debug)]
struct Inner<T> {
    items: VecDeque<T>,
    closed: bool,
}

impl<T> Queue<T> {
    pub(crate) fn new() -> Queue<T> {
        Queue {
            inner: Mutex::new(Inner {
                items: VecDeque::new(),
                closed: false,
            }),
            ready: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner<T>> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `item`; gives it back if the queue is closed.
    pub(crate) fn push(&self, item: T) -> Result<(), T> {
        {
            let mut inner = self.lock();
            if inner.closed {
                return Err(item);
            }
            inner.items.push_back(item);
        }
        self.ready.notify_one();
        Ok(())
    }

    /// Waits for the next item; `None` once the queue is closed and empty.
    pub(crate) async fn pop(&self) -> Option<T> {
        loop {
            {
                let mut inner = self.lock();
                if let Some(item) = inner.items.pop_front() {
                    release_if_drained(&mut inner.items);
                    return Some(item);
                }
                if inner.closed {
                    return None;
                }
            }
            // `notify_one` leaves a permit when nobody waits, so a push between the check
            // above and this await is not missed.
            self.ready.notified().await;
        }
    }

    /// Moves queued items to `out` while `take` accepts the next one (it sees each item before
    /// it is moved), under one lock.
    pub(crate) fn drain_into(&self, out: &mut Vec<T>, mut take: impl FnMut(&T) -> bool) {
        let mut inner = self.lock();
        while let Some(next) = inner.items.front() {
            if !take(next) {
                break;
            }
            out.extend(inner.items.pop_front());
        }
        release_if_drained(&mut inner.items);
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.lock().items.is_empty()
    }

    /// Refuses further pushes and wakes the consumer; items already queued stay poppable.
    pub(crate) fn close(&self) {
        self.lock().closed = true;
        self.ready.notify_one();
    }

    /// Closes the queue and drops everything in it (for the outbox: pending `send_and_wait`
    /// calls then fail).
    pub(crate) fn close_and_clear(&self) {
        let dropped = {
            let mut inner = self.lock();
            inner.closed = true;
            std::mem::take(&mut inner.items)
        };
        drop(dropped);
        self.ready.notify_one();
    }
}

fn release_if_drained<T>(items: &mut VecDeque<T>) {
    if items.is_empty() && items.capacity() > RETAINED_CAPACITY {
        *items = VecDeque::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn fifo_wakes_the_consumer_and_ends_after_close() {
        let q = Arc::new(Queue::new());
        let consumer = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(x) = q.pop().await {
                    got.push(x);
                }
                got
            })
        };
        for i in 0..1000 {
            q.push(i).unwrap();
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        q.close();
        assert_eq!(q.push(5000), Err(5000));
        assert_eq!(consumer.await.unwrap(), (0..1000).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn drain_takes_while_accepted_and_memory_is_released() {
        let q = Queue::new();
        for i in 0..100u32 {
            q.push(i).unwrap();
        }
        let mut out = Vec::new();
        let mut budget = 10;
        q.drain_into(&mut out, |_| {
            budget -= 1;
            budget >= 0
        });
        assert_eq!(out, (0..10).collect::<Vec<_>>());
        out.clear();
        q.drain_into(&mut out, |_| true);
        assert_eq!(out.len(), 90);
        assert!(q.is_empty());
        assert_eq!(q.lock().items.capacity(), 0, "burst buffer released");
        q.push(1).unwrap();
        q.close_and_clear();
        assert!(q.pop().await.is_none(), "cleared and closed");
    }
}
