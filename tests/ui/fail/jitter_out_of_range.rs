use redis_cached::redis_cached;

#[redis_cached(jitter = 1.5)]
async fn jittery(id: u64) -> u64 {
    id
}

fn main() {}
