//! Withdraw as a future, driven by a minimal executor.

mod common;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

struct Unpark(Thread);

impl Wake for Unpark {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `f` on this thread, parking between wake-ups; counts the polls.
fn block_on<F: Future>(f: F) -> (F::Output, usize) {
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    let mut polls = 0;
    loop {
        polls += 1;
        if let Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return (out, polls);
        }
        std::thread::park();
    }
}

/// A future that sends one message the first time `inner` is pending.
struct OnPending<F> {
    inner: std::pin::Pin<Box<F>>,
    tell: Option<std::sync::mpsc::Sender<()>>,
}

impl<F: Future> OnPending<F> {
    fn new(inner: F, tell: std::sync::mpsc::Sender<()>) -> Self {
        OnPending {
            inner: Box::pin(inner),
            tell: Some(tell),
        }
    }
}

impl<F: Future> Future for OnPending<F> {
    type Output = F::Output;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let poll = self.inner.as_mut().poll(cx);
        if poll.is_pending() {
            if let Some(tell) = self.tell.take() {
                tell.send(()).unwrap();
            }
        }
        poll
    }
}

#[test]
fn the_future_resolves_when_the_last_transfer_ends() {
    let env = common::env();
    let pool = &env.pool;
    let mut p = pool.declare("async").unwrap();
    p.write(&[1; 16]).unwrap();
    p.seal().unwrap();
    p.offer().unwrap();
    let mut c = pool.declare("async").unwrap();
    c.require().unwrap();
    let (pending, go) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(move || {
            // Demands only once the withdrawal was found waiting.
            go.recv().unwrap();
            c.demand().unwrap();
        });
        let (out, polls) = block_on(OnPending::new(p.withdraw_async(), pending));
        out.unwrap();
        assert!(polls >= 2, "pending until the demand, then woken");
    });
    assert_eq!(p.state(), cdo::State::Withdrawn);
    assert!(matches!(
        block_on(p.withdraw_async()).0,
        Err(cdo::Error::InvalidState { .. })
    ));
}

#[test]
fn the_future_resolves_when_the_lifetime_ends() {
    let env = common::env();
    let mut p = env.pool.declare("async/lifetime").unwrap();
    p.set_lifetime(Duration::from_millis(40)).unwrap();
    p.seal().unwrap();
    let start = Instant::now();
    p.offer().unwrap();
    block_on(p.withdraw_async()).0.unwrap();
    assert!(start.elapsed() >= Duration::from_millis(40));
}
