use redis_cached::redis_cached;

#[redis_cached(key = "{a}{b}")]
async fn adjacent(a: u64, b: u64) -> u64 {
    a + b
}

#[redis_cached(key = "{a}-{b}")]
async fn dash(a: i64, b: i64) -> i64 {
    a + b
}

#[redis_cached(key = "user:{id")]
async fn unclosed(id: u64) -> u64 {
    id
}

fn main() {}
