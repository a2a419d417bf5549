use redis_cached::cache_evict;

#[cache_evict(tags = ["user:{id}"])]
async fn not_a_result(id: u64) -> u64 {
    id
}

#[cache_evict(tags = ["user:{id}"])]
fn not_async(id: u64) -> Result<(), redis_cached::Error> {
    let _ = id;
    Ok(())
}

#[cache_evict(keys = ["x"])]
async fn no_tags(id: u64) -> Result<(), redis_cached::Error> {
    let _ = id;
    Ok(())
}

fn main() {}
