use redis_cached::redis_cached;

#[redis_cached(cache_none = true)]
async fn plain(id: u64) -> u64 {
    id
}

#[redis_cached(cache_none = false, none_ttl = 5)]
async fn contradictory(id: u64) -> Option<u64> {
    Some(id)
}

fn main() {}
