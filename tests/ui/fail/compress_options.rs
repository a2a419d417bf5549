use redis_cached::redis_cached;

#[redis_cached(ttl = 60, compress = "gzip")]
async fn unknown_algorithm(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, compress_over = 4096)]
async fn threshold_without_compress(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, compress = "off", compress_over = 4096)]
async fn threshold_with_compress_off(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, compress = true)]
async fn not_a_string(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, compress = "lz4", compress_over = 99999999999)]
async fn threshold_too_large(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, codec = "bincode")]
async fn unknown_codec(id: u64) -> u64 {
    id
}

fn main() {}
