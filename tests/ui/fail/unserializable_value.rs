use redis_cached::redis_cached;

struct NotSerde;

#[redis_cached(ttl = 60)]
async fn opaque(id: u64) -> NotSerde {
    let _ = id;
    NotSerde
}

fn main() {}
