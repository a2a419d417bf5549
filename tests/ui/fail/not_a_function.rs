use redis_cached::redis_cached;

#[redis_cached(ttl = 60)]
struct NotAFunction;

fn main() {}
