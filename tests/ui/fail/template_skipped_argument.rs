use redis_cached::redis_cached;

#[redis_cached(key = "user:{db}")]
async fn get(id: u64, #[cache(skip)] db: &str) -> u64 {
    let _ = db;
    id
}

fn main() {}
