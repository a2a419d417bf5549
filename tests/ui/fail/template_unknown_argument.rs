use redis_cached::redis_cached;

#[redis_cached(key = "user:{user_id}")]
async fn get(id: u64) -> u64 {
    id
}

fn main() {}
