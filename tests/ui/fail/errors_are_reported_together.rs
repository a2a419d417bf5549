use redis_cached::redis_cached;

#[redis_cached(ttl = "soon", jitter = 2, version = 1, version = 2)]
async fn many(id: u64) -> u64 {
    id
}

fn main() {
    // The function is still emitted: this call does not add an error.
    let _ = many(1);
}
