use redis_cached::cache_evict;

#[derive(Debug)]
struct MyError;

#[cache_evict(tags = ["user:{id}"])]
async fn update(id: u64) -> Result<(), MyError> {
    let _ = id;
    Ok(())
}

fn main() {}
