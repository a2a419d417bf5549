use redis_cached::redis_cached;

#[redis_cached(ttl = 60)]
async fn opaque(id: u64) -> impl std::fmt::Display {
    id
}

fn main() {}
