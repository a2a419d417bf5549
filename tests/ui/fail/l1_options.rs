use redis_cached::redis_cached;

#[redis_cached(ttl = 60, l1_ttl = "5s")]
async fn ttl_without_l1(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, l1 = false, l1_outage = "30s")]
async fn outage_without_l1(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, l1 = true, l1_capacity = 1024)]
async fn budget_per_function(id: u64) -> u64 {
    id
}

#[redis_cached(ttl = 60, l1 = "yes")]
async fn not_a_bool(id: u64) -> u64 {
    id
}

fn main() {}

#[redis_cached(ttl = 60, l1 = true, key = "{id}", tags = ["user:{id}", "org:{org}"])]
async fn tag_outside_the_key(id: u64, org: u64) -> u64 {
    id + org
}

#[redis_cached(ttl = 60, l1 = true, tags = ["tenant:{tenant}"])]
async fn tag_of_a_skipped_argument(id: u64, #[cache(skip)] tenant: &str) -> u64 {
    id + tenant.len() as u64
}

pub struct User {
    pub id: u64,
    pub org_id: u64,
}

#[redis_cached(ttl = 60, l1 = true, key = "{user.id}", tags = ["org:{user.org_id}"])]
async fn field_outside_the_key(user: &User) -> u64 {
    user.id
}

pub struct Service {
    pub tenant: String,
}

impl Service {
    #[redis_cached(ttl = 60, l1 = true, name = "svc::get", tags = ["tenant:{self.tenant}"])]
    async fn receiver_outside_the_key(&self, id: u64) -> u64 {
        id
    }
}
