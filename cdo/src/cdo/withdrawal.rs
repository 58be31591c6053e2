//! [`Withdrawal`]: withdraw as a future.

use super::Cdo;
use crate::error::Result;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

/// The future of [`Cdo::withdraw_async`]; it resolves once the offer is
/// withdrawn (the conditions of [`Cdo::withdraw`]).
///
/// It needs no particular runtime: it hands the task's waker to the offer,
/// which wakes it when the last transfer in flight ends, and a CDO with a
/// lifetime starts one helper thread that wakes it when the lifetime ends.
/// Dropping the future leaves the CDO offered. Acknowledged `Withdraw`
/// subscriptions block the poll that completes it.
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Withdrawal<'a, 'p> {
    cdo: &'a mut Cdo<'p>,
    timer: bool,
}

impl<'p> Cdo<'p> {
    /// Producer: [`Cdo::withdraw`] as a future.
    pub fn withdraw_async(&mut self) -> Withdrawal<'_, 'p> {
        Withdrawal {
            cdo: self,
            timer: false,
        }
    }
}

impl Future for Withdrawal<'_, '_> {
    type Output = Result<()>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let this = &mut *self;
        if this.cdo.withdraw_until(Some(Instant::now()), false)? {
            return Poll::Ready(Ok(()));
        }
        let Some(offer) = this.cdo.offer.clone() else {
            return Poll::Ready(Err(this
                .cdo
                .inconsistent("offered without an offer".into())));
        };
        offer.wake_when_unpinned(cx.waker());
        match offer.expiry {
            Some(expiry) if !this.timer && Instant::now() < expiry => {
                this.timer = true;
                let waker = cx.waker().clone();
                std::thread::spawn(move || {
                    std::thread::sleep(expiry.saturating_duration_since(Instant::now()));
                    waker.wake();
                });
            }
            _ => {}
        }
        // Checks again now that the waker is registered: the last transfer
        // may have ended in between.
        if this.cdo.withdraw_until(Some(Instant::now()), false)? {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }
}
