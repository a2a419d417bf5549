use redis_cached::redis_cached;

#[redis_cached(lock = false, lock_ttl = "5s", lock_wait = "1s")]
async fn unlocked(id: u64) -> u64 {
    id
}

#[redis_cached(early_refresh = 0)]
async fn never_early(id: u64) -> u64 {
    id
}

#[redis_cached(stale = "soon")]
async fn bad_stale(id: u64) -> u64 {
    id
}

fn main() {}
