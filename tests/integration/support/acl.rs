//! ACL users for tests: the library's and the operator's command profiles.

use super::RedisServer;

/// The library's profile, as the README documents it.
pub const LIBRARY_COMMANDS: &str = "+get +mget +set +pttl +exists +unlink +del +pexpire +multi +exec \
    +evalsha +script|load +ping +info +select +client|tracking +hincrby +zincrby +zadd \
    +zremrangebyscore +expire";

/// What `invalidation_replicas` adds to the library's profile.
#[allow(dead_code)] // used by the replication tests
pub const REPLICATION_COMMANDS: &str = "+wait";

#[allow(dead_code)] // used by the CLI tests, which include this module
/// The operator profile of the `redis-cached` command line: the library's, and what its views
/// read (add `+hotkeys|get` on Redis 8.6+ to show the server's own hot keys).
pub const OPERATOR_COMMANDS: &str = "+get +mget +set +pttl +exists +unlink +del +pexpire +multi +exec \
    +evalsha +script|load +ping +info +select +client|tracking +hincrby +zincrby +zadd \
    +zremrangebyscore +expire +scan +memory|usage +hgetall +zunion +zcount +xadd \
    +xrevrange";

/// Creates `user` with `password`, limited to the namespace `ns` and `commands`.
pub async fn acl_user(server: &RedisServer, user: &str, password: &str, ns: &str, commands: &str) {
    let mut rule = vec![
        user.to_owned(),
        "reset".into(),
        "on".into(),
        format!(">{password}"),
        format!("~{ns}:*"),
        format!("~{ns};*"),
        "-@all".into(),
    ];
    rule.extend(commands.split_whitespace().map(str::to_owned));
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&rule)
        .query_async(&mut server.conn().await)
        .await
        .expect("ACL SETUSER");
}

/// What the server refused since the last reset.
pub async fn acl_denials(server: &RedisServer) -> Vec<String> {
    let log: Vec<redis::Value> = redis::cmd("ACL")
        .arg("LOG")
        .query_async(&mut server.conn().await)
        .await
        .expect("ACL LOG");
    log.iter().map(|entry| format!("{entry:?}")).collect()
}
