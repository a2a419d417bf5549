use redis_cached::redis_cached;

#[redis_cached(ttl = 60)]
async fn marker(id: u64, #[cache(skp)] db: &str) -> u64 {
    let _ = db;
    id
}

fn main() {}
