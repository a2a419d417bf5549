use redis_cached::redis_cached;

#[redis_cached(ttl = 60, codec = "json")]
async fn later(id: u64) -> u64 {
    id
}

fn main() {}
