//! `#[cache_evict]` forms: a `Result` whose error converts from `redis_cached::Error`, and an
//! explicit handler for any return type.

use redis_cached::cache_evict;

#[derive(Debug)]
struct AppError;

impl From<redis_cached::Error> for AppError {
    fn from(_: redis_cached::Error) -> Self {
        AppError
    }
}

#[cache_evict(tags = ["user:{id}", "org:{org}"])]
async fn update(id: u64, org: &str) -> Result<u64, AppError> {
    if id == 0 {
        return Err(AppError);
    }
    Ok(id + org.len() as u64)
}

fn log_failure(err: redis_cached::Error) {
    eprintln!("invalidation failed: {err}");
}

#[cache_evict(tags = ["all-users"], on_error = log_failure)]
async fn touch() -> u64 {
    1
}

fn main() {
    let _ = update(1, "x");
    let _ = touch();
}
