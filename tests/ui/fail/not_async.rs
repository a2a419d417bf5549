use redis_cached::redis_cached;

#[redis_cached(ttl = 60)]
fn not_async(id: u64) -> u64 {
    id
}

fn main() {}
