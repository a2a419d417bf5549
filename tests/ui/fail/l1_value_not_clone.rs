use redis_cached::redis_cached;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
pub struct Report {
    pub rows: Vec<u64>,
}

#[redis_cached(ttl = 60, l1 = true)]
async fn report(id: u64) -> Report {
    Report { rows: vec![id] }
}

#[redis_cached(ttl = 60, l1 = true)]
async fn maybe_report(id: u64) -> Result<Option<Report>, std::io::Error> {
    Ok(Some(Report { rows: vec![id] }))
}

fn main() {}
