use redis_cached::redis_cached;

type Fallible<T> = Result<T, String>;

#[redis_cached(ttl = 60)]
async fn hidden(id: u64) -> Fallible<u64> {
    Ok(id)
}

fn main() {}
