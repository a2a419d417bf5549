//! Private servers for the service's tests: a PostgreSQL cluster made with `initdb` and a
//! `redis-server`, each on a free loopback port in a temporary directory, stopped and removed
//! on drop. Never the machine's own.

pub mod postgres;
pub mod redis;

use std::{
    net::TcpListener,
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
};

/// A loopback port that is free now.
pub fn free_port() -> u16 {
    TcpListener::bind(("127.0.0.1", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A new empty directory under the system's temporary directory.
pub fn temp_dir(what: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = std::env::temp_dir().join(format!(
        "redis-cached-service-{what}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create temp dir");
    dir
}
