use redis_cached::redis_cached;

#[redis_cached(ttl = 60, ttl = 30)]
async fn twice(id: u64) -> u64 {
    id
}

fn main() {}
