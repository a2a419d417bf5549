use redis_cached::redis_cached;

#[redis_cached(ttl = 60)]
async fn nothing(id: u64) {
    let _ = id;
}

fn main() {}
