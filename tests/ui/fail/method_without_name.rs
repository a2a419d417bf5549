use redis_cached::redis_cached;

struct Repo;

impl Repo {
    #[redis_cached(ttl = 60)]
    async fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
