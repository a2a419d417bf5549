//! Signatures the attribute must accept: methods, generics, references, patterns,
//! `impl Trait` arguments, aliases of `Result`, constants as TTLs, explicit caches.

use std::{sync::Arc, time::Duration};

use redis_cached::{Cache, redis_cached};
use serde::{Serialize, de::DeserializeOwned};

const TTL: Duration = Duration::from_secs(90);
const TTL_SECS: u64 = 90;

type AppResult<T> = Result<T, String>;

struct Service {
    cache: Cache,
    tenant: String,
}

impl Service {
    #[redis_cached(ttl = TTL, name = "service::get", cache = &self.cache)]
    pub async fn get(&self, id: u64) -> AppResult<String> {
        Ok(format!("{}:{id}", self.tenant))
    }

    #[redis_cached(ttl = TTL_SECS, key = "{self.tenant}:{id}")]
    async fn templated(self: Arc<Self>, id: u64) -> Option<u64> {
        Some(id)
    }

    #[redis_cached(name = "service::mutable")]
    async fn mutable(&mut self, id: u64) -> u64 {
        self.tenant.push('!');
        id
    }
}

#[redis_cached(ttl = "1h30m", version = 3, jitter = 0.1)]
pub(crate) async fn generic<T, const N: usize>(id: u64) -> Vec<T>
where
    T: Serialize + DeserializeOwned + Default + Clone,
{
    vec![T::default(); N + id as usize]
}

#[redis_cached(ttl = 60)]
async fn references<'a>(name: &'a str, items: &[u32], mut count: u8, (a, b): (u8, u8)) -> String {
    count += a + b;
    format!("{name}{}{count}", items.len())
}

#[redis_cached(ttl = 60)]
async fn impl_args(value: impl Serialize + ToString, #[cache(skip)] _log: impl Fn(&str)) -> String {
    value.to_string()
}

#[redis_cached(ttl = 60, none_ttl = "10s")]
async fn early_return(id: u64) -> Result<Option<u64>, std::io::Error> {
    if id == 0 {
        return Ok(None);
    }
    let parsed: u64 = "42".parse().map_err(std::io::Error::other)?;
    Ok(Some(parsed + id))
}

#[redis_cached(ttl = 60, tags = ["user:{id}", "org:{org.0}", "tenant:{tenant}", "all-users"])]
async fn tagged(id: u64, org: (u32, String), #[cache(skip)] tenant: &str) -> u64 {
    id + u64::from(org.0) + tenant.len() as u64
}

#[redis_cached(ttl = 60)]
async fn no_arguments() -> u64 {
    7
}

#[redis_cached(ttl = 60, stale = "10m", early_refresh = 1.0, lock_ttl = "30s", lock_wait = "2s")]
async fn refreshed_in_background(id: u64, name: String) -> Result<String, std::io::Error> {
    Ok(format!("{id}{name}"))
}

#[redis_cached(ttl = 60, stale = 600, lock = false)]
async fn refreshed_in_foreground(id: &str) -> Option<String> {
    Some(id.to_owned())
}

/// `l1`: the cached value (`String`) is `Clone`; the error type need not be.
#[redis_cached(ttl = 60, l1 = true, l1_ttl = "5s", l1_outage = "30s", tags = ["user:{id}"])]
async fn first_level(id: u64) -> Result<Option<String>, std::io::Error> {
    Ok(Some(id.to_string()))
}

#[redis_cached(ttl = 60, l1 = true, key = "{org.0}/{id}", tags = ["org:{org.0}", "user:{id}"])]
async fn first_level_template(id: u64, org: (u32, String)) -> u64 {
    id + u64::from(org.0)
}

#[redis_cached(ttl = 60, l1 = true, stale = 600)]
async fn first_level_plain(id: u64, name: String) -> Vec<String> {
    vec![name; id as usize]
}

impl Service {
    #[redis_cached(ttl = 60, stale = 600, name = "service::bg")]
    async fn background_method(self: Arc<Self>, id: u64) -> u64 {
        self.tenant.len() as u64 + id
    }
}

async fn use_all(service: Service) {
    let _ = service.get(1).await;
    let _ = service.get_key(1);
    let _ = service.get_invalidate(1).await;
    let _ = service.get_put(1, &"x".to_string()).await;
    let _ = service.get_refresh(1).await;
    let service = Arc::new(service);
    let _ = service.clone().templated(1).await;
    let _ = service.templated_key(1);
    let _ = service.clone().background_method(1).await;
    let _ = generic::<u8, 2>(1).await;
    let _ = generic_key::<u8, 2>(1);
    let _ = generic_refresh::<u8, 2>(1).await;
    let _ = references("a", &[1], 0, (1, 2)).await;
    let _ = references_invalidate("a", &[1], 0, (1, 2)).await;
    let _ = impl_args(5u8, |_| {}).await;
    let _ = impl_args_refresh(5u8, |_: &str| {}).await;
    let _ = early_return(0).await;
    let _ = no_arguments().await;
    let _ = tagged(1, (2, "x".into()), "t").await;
    let _ = tagged_put(1, (2, "x".into()), "t", &5).await;
    let _ = tagged_invalidate(1, (2, "x".into())).await;
    let _ = no_arguments_key();
    let _ = refreshed_in_background(1, "x".into()).await;
    let _ = refreshed_in_foreground("x").await;
    let _ = first_level(1).await;
    let _ = first_level_invalidate(1).await;
    let _ = first_level_plain(1, "x".into()).await;
    let _ = first_level_template(1, (2, "x".into())).await;
}

fn main() {
    let _ = use_all;
    let _ = Service::mutable;
}
