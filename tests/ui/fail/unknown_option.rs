use redis_cached::redis_cached;

#[redis_cached(ttl = 60, tll = 5)]
async fn typo(id: u64) -> u64 {
    id
}

fn main() {}
