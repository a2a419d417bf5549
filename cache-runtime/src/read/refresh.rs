//! `NAME_refresh`: runs the real function under a task-local request that its first cached
//! call skip the lookup, load and store, and report whether the store succeeded. Nested cached
//! calls inside the loader behave normally (the request is taken by the first).

use std::{cell::RefCell, future::Future};

use crate::Error;

/// A request, set by [`refresh`], that the next cached call skip its lookup and load.
struct Request {
    pending: bool,
    outcome: Option<Result<(), Error>>,
}

tokio::task_local! {
    static REQUEST: RefCell<Request>;
}

/// Whether an enclosing [`refresh`] requests that the next cached call skip its lookup.
pub(crate) fn requested() -> bool {
    REQUEST.try_with(|r| r.borrow().pending).unwrap_or(false)
}

/// Takes the refresh request of an enclosing [`refresh`], so nested cached calls do not see it.
pub(crate) fn take_request() -> bool {
    REQUEST
        .try_with(|r| std::mem::replace(&mut r.borrow_mut().pending, false))
        .unwrap_or(false)
}

/// Records how the refresh's store went; the first error recorded stands.
pub(crate) fn record(outcome: Result<(), Error>) {
    let _ = REQUEST.try_with(|r| {
        let mut request = r.borrow_mut();
        if !matches!(request.outcome, Some(Err(_))) {
            request.outcome = Some(outcome);
        }
    });
}

/// Runs a cached function's call so that it skips the lookup, loads and stores (`NAME_refresh`).
///
/// Returns the function's output once it is stored; `Err` if there is no cache or storing failed.
pub async fn refresh<F: Future>(call: F) -> Result<F::Output, Error> {
    let request = RefCell::new(Request {
        pending: true,
        outcome: None,
    });
    REQUEST
        .scope(request, async {
            let output = call.await;
            let outcome = REQUEST.with(|r| r.borrow_mut().outcome.take());
            outcome.unwrap_or(Ok(())).map(|()| output)
        })
        .await
}
