use redis_cached::redis_cached;

#[redis_cached(ttl = "1 hour")]
async fn bad(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 0)]
async fn zero(id: u64) -> u64 {
    id
}

fn main() {}
