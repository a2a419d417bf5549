use redis_cached::redis_cached;

#[redis_cached(key = "user:{id.4294967296}")]
async fn index_too_large(id: (u64,)) -> u64 {
    id.0
}

#[redis_cached(key = "user:{id²}")]
async fn not_an_identifier(id: u64) -> u64 {
    id
}

#[redis_cached(key = "user:{id .0}")]
async fn spaced(id: (u64,)) -> u64 {
    id.0
}

fn main() {}
