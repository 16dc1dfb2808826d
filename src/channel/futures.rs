//! `send_async` / `recv_async`: futures that work on any executor.
//!
//! A future that cannot complete registers its task's `Waker` in the same
//! wait list as blocked threads, re-checks, and returns `Pending`; the next
//! send or receive wakes it. Dropping a registered future unregisters it and
//! passes on a wake-up it received but did not use.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use super::{Outcome, Overflow, Receiver, RecvError, SendError, Sender};
use crate::ring::NoSlot;
use crate::wait::{Ticket, Waiters, Wake};

/// The future of [`Receiver::recv_async`].
#[must_use = "futures do nothing unless polled"]
pub struct RecvFuture<'a, T> {
    receiver: &'a Receiver<T>,
    ticket: Option<Ticket>,
}

// The futures never pin their fields: the item is moved out by value.
impl<T> Unpin for SendFuture<'_, T> {}

/// The future of [`Sender::send_async`].
#[must_use = "futures do nothing unless polled"]
pub struct SendFuture<'a, T> {
    sender: &'a Sender<T>,
    item: Option<T>,
    ticket: Option<Ticket>,
}

impl<T> Receiver<T> {
    /// Receives the oldest item, waiting asynchronously for one.
    ///
    /// Resolves to `Err(RecvError)` once every sender is gone and the
    /// channel is empty.
    pub fn recv_async(&self) -> RecvFuture<'_, T> {
        RecvFuture {
            receiver: self,
            ticket: None,
        }
    }
}

impl<T> Sender<T> {
    /// Sends `item`, waiting asynchronously for room.
    ///
    /// Under `Block` and `BlockTimeout` it waits for room (no timer is
    /// applied: wrap the future in your runtime's timeout); under the other
    /// policies it completes at once, exactly like [`send`](Self::send).
    /// Resolves to `Err(SendError(item))` when the item was not accepted.
    pub fn send_async(&self, item: T) -> SendFuture<'_, T> {
        SendFuture {
            sender: self,
            item: Some(item),
            ticket: None,
        }
    }
}

/// Shared poll step: `Some(result)` when done, `None` to return `Pending`.
fn poll_step<R>(
    waiters: &Waiters,
    ticket: &mut Option<Ticket>,
    cx: &mut Context<'_>,
    mut attempt: impl FnMut() -> Outcome<R>,
) -> Poll<Option<R>> {
    loop {
        match attempt() {
            Outcome::Ready(r) => {
                if let Some(t) = ticket.take() {
                    waiters.unregister(t, true);
                }
                return Poll::Ready(Some(r));
            }
            Outcome::Closed => {
                if let Some(t) = ticket.take() {
                    waiters.unregister(t, true);
                }
                return Poll::Ready(None);
            }
            Outcome::NotReady(blocked) => match ticket {
                Some(t) if waiters.update(t, cx.waker()) => {
                    if blocked == NoSlot::InFlight {
                        // A peer is mid-operation and may have missed our
                        // registration (see DESIGN.md): poll again soon.
                        cx.waker().wake_by_ref();
                    }
                    return Poll::Pending;
                }
                _ => {
                    // Notified (or never registered): register, then re-check.
                    if let Some(t) = ticket.take() {
                        waiters.unregister(t, true);
                    }
                    *ticket = Some(waiters.register(Wake::Task(cx.waker().clone())));
                }
            },
        }
    }
}

impl<T> Future for RecvFuture<'_, T> {
    type Output = Result<T, RecvError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let chan = &*this.receiver.chan;
        poll_step(&chan.readers, &mut this.ticket, cx, || chan.pop()).map(|r| r.ok_or(RecvError))
    }
}

impl<T> Future for SendFuture<'_, T> {
    type Output = Result<(), SendError<T>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let chan = &*this.sender.chan;
        if !matches!(chan.overflow, Overflow::Block | Overflow::BlockTimeout(_)) {
            let item = this.item.take().expect("polled after completion");
            return Poll::Ready(this.sender.send(item));
        }
        let item = &mut this.item;
        match poll_step(&chan.writers, &mut this.ticket, cx, || chan.push(item)) {
            Poll::Ready(Some(())) => Poll::Ready(Ok(())),
            Poll::Ready(None) => Poll::Ready(Err(SendError(this.item.take().expect("item kept")))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Drop for RecvFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.receiver.chan.readers.unregister(t, false);
        }
    }
}

impl<T> Drop for SendFuture<'_, T> {
    fn drop(&mut self) {
        if let Some(t) = self.ticket.take() {
            self.sender.chan.writers.unregister(t, false);
        }
    }
}

impl<T> std::fmt::Debug for RecvFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvFuture")
            .field("registered", &self.ticket.is_some())
            .finish()
    }
}

impl<T> std::fmt::Debug for SendFuture<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendFuture")
            .field("registered", &self.ticket.is_some())
            .finish()
    }
}
