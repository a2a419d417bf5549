use redis_cached::redis_cached;

#[redis_cached(tags = ["org:{org_id}"])]
async fn unknown_argument(id: u64) -> u64 {
    id
}

#[redis_cached(tags = "user:{id}")]
async fn not_a_list(id: u64) -> u64 {
    id
}

#[redis_cached(tags = ["user:{id"])]
async fn unclosed(id: u64) -> u64 {
    id
}

fn main() {}
