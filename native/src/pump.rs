//! One task per socket that owns the socket's receive side and feeds a bounded queue.
//!
//! Dropping a pending `recv` or `accept` future inside the netstack loses the bytes or leaks the
//! accepted connection, so JavaScript never awaits those futures directly: the pump does, and
//! JavaScript pulls finished items from the queue, which is safe to abandon at any time.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Failure, Result};
use crate::sync::Recover;

pub enum Step<T> {
    Item(T),
    /// The source ended normally (end of stream); nothing more will come.
    End,
    Fail(Failure),
}

pub struct Inbox<T> {
    rx: tokio::sync::Mutex<mpsc::Receiver<Step<T>>>,
    ended: AtomicBool,
    failure: Mutex<Option<Failure>>,
    what: &'static str,
}

/// Starts the pump in `span` (its device's: what the socket logs, and the socket's drop when the
/// pump ends, reach that device's sink). It stops when `next` ends or fails, when `stop` is
/// cancelled, or when the inbox is dropped; whatever `next` captured is dropped with it.
pub fn spawn<T, F, Fut>(
    what: &'static str,
    span: tracing::Span,
    stop: CancellationToken,
    capacity: usize,
    mut next: F,
) -> Inbox<T>
where
    T: Send + 'static,
    F: FnMut() -> Fut + Send + 'static,
    Fut: Future<Output = Step<T>> + Send,
{
    let (tx, rx) = mpsc::channel(capacity);
    let pump_token = stop;
    let pump = async move {
        loop {
            let step = tokio::select! {
                biased;
                () = pump_token.cancelled() => break,
                step = next() => step,
            };
            let last = !matches!(step, Step::Item(_));
            let sent = tokio::select! {
                biased;
                () = pump_token.cancelled() => break,
                sent = tx.send(step) => sent,
            };
            if last || sent.is_err() {
                break;
            }
        }
    };
    // Explicitly, not the caller's current span: `accept` and the like run in no span at all.
    tokio::spawn(tracing::Instrument::instrument(pump, span));
    Inbox { rx: tokio::sync::Mutex::new(rx), ended: AtomicBool::new(false), failure: Mutex::new(None), what }
}

impl<T> Inbox<T> {
    /// The next item; `Ok(None)` at the end. Fails with `DEVICE_CLOSED` once `closed` is
    /// cancelled, also while waiting.
    pub async fn next(&self, closed_token: &CancellationToken) -> Result<Option<T>> {
        Ok(self.next_batch(closed_token, 1).await?.map(|mut items| items.swap_remove(0)))
    }

    /// Waits like `next`, then also takes the items already queued behind the first, up to
    /// `max` in all, so one call from JavaScript can carry several. An end or failure among
    /// them is kept for the next call.
    pub async fn next_batch(&self, closed_token: &CancellationToken, max: usize) -> Result<Option<Vec<T>>> {
        let closed = || Failure::device_closed(self.what);
        if closed_token.is_cancelled() {
            return Err(closed());
        }
        if self.ended.load(Ordering::Acquire) {
            return Ok(None);
        }
        if let Some(failure) = self.stored_failure() {
            return Err(failure);
        }
        let mut rx = tokio::select! {
            biased;
            () = closed_token.cancelled() => return Err(closed()),
            rx = self.rx.lock() => rx,
        };
        // `recv` is cancel-safe: abandoning it here loses nothing.
        let step = tokio::select! {
            biased;
            () = closed_token.cancelled() => return Err(closed()),
            step = rx.recv() => step,
        };
        let first = match step {
            Some(step) => self.settle(step)?,
            None => return Err(self.stored_failure().unwrap_or_else(closed)),
        };
        let Some(first) = first else { return Ok(None) };
        let mut items = vec![first];
        while items.len() < max {
            match rx.try_recv().map(|step| self.settle(step)) {
                Ok(Ok(Some(item))) => items.push(item),
                // Empty, or an end or failure that `settle` has recorded for the next call.
                _ => break,
            }
        }
        Ok(Some(items))
    }

    /// Discards the items queued now (for a socket handed to a new owner); an end or failure
    /// among them is kept.
    pub async fn discard_queued(&self) {
        let mut rx = self.rx.lock().await;
        while let Ok(step) = rx.try_recv() {
            let _ = self.settle(step);
        }
    }

    fn settle(&self, step: Step<T>) -> Result<Option<T>> {
        match step {
            Step::Item(item) => Ok(Some(item)),
            Step::End => {
                self.ended.store(true, Ordering::Release);
                Ok(None)
            }
            Step::Fail(failure) => {
                *self.failure.recover() = Some(failure.clone());
                Err(failure)
            }
        }
    }

    fn stored_failure(&self) -> Option<Failure> {
        self.failure.recover().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Code;

    #[tokio::test]
    async fn items_then_end() {
        let mut items = vec![Step::End, Step::Item(2), Step::Item(1)];
        let open = CancellationToken::new();
        let inbox = spawn("test source", tracing::Span::none(), CancellationToken::new(), 1, move || {
            let step = items.pop().unwrap();
            async move { step }
        });
        assert_eq!(inbox.next(&open).await.unwrap(), Some(1));
        assert_eq!(inbox.next(&open).await.unwrap(), Some(2));
        assert_eq!(inbox.next(&open).await.unwrap(), None);
        assert_eq!(inbox.next(&open).await.unwrap(), None);
    }

    #[tokio::test]
    async fn a_batch_takes_what_is_queued_and_keeps_the_end_for_later() {
        let mut items = vec![Step::End, Step::Item(3), Step::Item(2), Step::Item(1)];
        let open = CancellationToken::new();
        let inbox = spawn("test source", tracing::Span::none(), CancellationToken::new(), 8, move || {
            let step = items.pop().unwrap();
            async move { step }
        });
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        assert_eq!(inbox.next_batch(&open, 2).await.unwrap(), Some(vec![1, 2]));
        assert_eq!(inbox.next_batch(&open, 8).await.unwrap(), Some(vec![3]));
        assert_eq!(inbox.next_batch(&open, 8).await.unwrap(), None);
    }

    #[tokio::test]
    async fn failure_is_sticky() {
        let inbox: Inbox<u8> = spawn("test source", tracing::Span::none(), CancellationToken::new(), 1, || async {
            Step::Fail(Failure::new(Code::ConnectionReset, "test", "reset"))
        });
        let open = CancellationToken::new();
        assert_eq!(inbox.next(&open).await.unwrap_err().code, Code::ConnectionReset);
        assert_eq!(inbox.next(&open).await.unwrap_err().code, Code::ConnectionReset);
    }

    #[tokio::test]
    async fn queued_items_can_be_discarded() {
        let mut count = 0;
        let inbox = spawn("test source", tracing::Span::none(), CancellationToken::new(), 4, move || {
            count += 1;
            let step = if count <= 3 { Step::Item(count) } else { Step::End };
            async move { step }
        });
        tokio::task::yield_now().await;
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        inbox.discard_queued().await;
        assert_eq!(inbox.next(&CancellationToken::new()).await.unwrap(), None);
    }

    #[tokio::test]
    async fn cancel_fails_a_pending_next() {
        let token = CancellationToken::new();
        let inbox: Inbox<u8> = spawn("test source", tracing::Span::none(), token.clone(), 1, std::future::pending);
        let cancel = async {
            tokio::task::yield_now().await;
            token.cancel();
        };
        let (result, ()) = tokio::join!(inbox.next(&token), cancel);
        assert_eq!(result.unwrap_err().code, Code::DeviceClosed);
    }
}
