use redis_cached::redis_cached;

#[redis_cached(name = "users {get}")]
async fn named(id: u64) -> u64 {
    id
}

fn main() {}
