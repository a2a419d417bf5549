use redis_cached::redis_cached;

trait Repo {
    async fn get(&self, id: u64) -> u64;
}

struct Db;

impl Repo for Db {
    #[redis_cached(ttl = 60, name = "db::get")]
    async fn get(&self, id: u64) -> u64 {
        id
    }
}

fn main() {}
