//! One `redis-server` child process.

use std::{
    io::{Read, Write},
    net::{TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant},
};

static NEXT_DIR: AtomicU32 = AtomicU32::new(0);

/// A private Redis server. Killed and its directory removed on drop.
pub struct RedisServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Served over TLS only, with these certificates (see [`TlsFiles`]).
    tls: Option<super::tls::TlsFiles>,
    /// A Sentinel: the contents of its config file (written to its directory; Sentinel
    /// rewrites it as it learns the topology).
    sentinel_config: Option<String>,
}

/// A port that is free now, with its cluster bus port (+10000) free too, below 55535.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let port = 20_000 + fastrand_u16(25_000);
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()
        {
            return port;
        }
    }
    panic!("no free loopback port found");
}

fn fastrand_u16(below: u16) -> u16 {
    // Mix the clock and a counter: enough to spread ports between parallel tests.
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let n = nanos
        .wrapping_mul(2_654_435_761)
        .wrapping_add(COUNTER.fetch_add(7919, Ordering::Relaxed))
        .wrapping_add(std::process::id().wrapping_mul(40503));
    (n % u32::from(below)) as u16
}

pub fn redis_server_binary() -> &'static str {
    if Command::new("redis-server")
        .arg("--version")
        .output()
        .is_err()
    {
        panic!(
            "redis-server is not installed. Run the suite with scripts/test.sh, which installs it \
             (apt-get install -y redis-server), or install it yourself."
        );
    }
    "redis-server"
}

impl RedisServer {
    /// Starts a server on a free port and waits until it answers PING.
    pub fn start() -> RedisServer {
        Self::start_with(&[])
    }

    /// Starts a server with extra `redis-server` arguments.
    pub fn start_with(extra_args: &[&str]) -> RedisServer {
        Self::start_inner(extra_args, None)
    }

    /// Starts a server that speaks TLS only (`rediss://`), with certificates made for it.
    pub fn start_tls() -> RedisServer {
        Self::start_inner(&[], Some(super::tls::TlsFiles::generate()))
    }

    /// Starts a Sentinel (`redis-server CONF --sentinel`) with this configuration.
    pub fn start_sentinel(config: &str) -> RedisServer {
        Self::start_inner_with(&[], None, Some(config.to_owned()))
    }

    fn start_inner(extra_args: &[&str], tls: Option<super::tls::TlsFiles>) -> RedisServer {
        Self::start_inner_with(extra_args, tls, None)
    }

    fn start_inner_with(
        extra_args: &[&str],
        tls: Option<super::tls::TlsFiles>,
        sentinel_config: Option<String>,
    ) -> RedisServer {
        let extra_args: Vec<String> = extra_args.iter().map(|s| s.to_string()).collect();
        for _attempt in 0..5 {
            let port = free_port();
            let dir = std::env::temp_dir().join(format!(
                "redis-cached-test-{}-{}",
                std::process::id(),
                NEXT_DIR.fetch_add(1, Ordering::Relaxed)
            ));
            std::fs::create_dir_all(&dir).expect("create temp dir");
            let mut server = RedisServer {
                port,
                dir,
                child: None,
                extra_args: extra_args.clone(),
                tls: tls.clone(),
                sentinel_config: sentinel_config.clone(),
            };
            // The port was free a moment ago; another process may take it (retry on a new one).
            if server.spawn() {
                return server;
            }
        }
        panic!("could not start redis-server after 5 attempts");
    }

    fn spawn(&mut self) -> bool {
        // A restart must not read the previous run's "ready" line.
        let _ = std::fs::remove_file(self.dir.join("redis.log"));
        let port = self.port.to_string();
        let ports: Vec<String> = match &self.tls {
            None => vec!["--port".into(), port],
            Some(tls) => tls.server_args(&port),
        };
        let mut command = Command::new(redis_server_binary());
        match &self.sentinel_config {
            Some(config) => {
                // The config file comes first; Sentinel needs it writable and has no RDB.
                let path = self.dir.join("sentinel.conf");
                if !path.exists() {
                    std::fs::write(&path, config).expect("write sentinel.conf");
                }
                command.arg(&path).arg("--sentinel");
            }
            None => {
                command.args(["--save", "", "--appendonly", "no"]);
            }
        }
        let child = command
            .args(&ports)
            .args(["--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(self.dir.join("redis.log"))
            .args(&self.extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(_)) = child.try_wait()
            {
                self.child = None;
                return false;
            }
            // Another test's server may answer on the port while ours fails to bind: only
            // our own log saying it listens makes the answer ours.
            let answers = match self.tls {
                // A TLS port does not answer a plain PING: listening is enough.
                Some(_) => TcpStream::connect(("127.0.0.1", self.port)).is_ok(),
                None => self.ping(),
            };
            if self.logged_ready() && answers {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        self.kill();
        false
    }

    /// Whether this server's own log says it accepts connections.
    fn logged_ready(&self) -> bool {
        let ready = match self.sentinel_config {
            Some(_) => "+monitor master",
            None => "Ready to accept connections",
        };
        std::fs::read_to_string(self.dir.join("redis.log")).is_ok_and(|log| log.contains(ready))
    }

    /// Whether the server answers PING right now.
    pub fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect_timeout(
            &([127, 0, 0, 1], self.port).into(),
            Duration::from_millis(200),
        ) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
        if stream.write_all(b"PING\r\n").is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).is_ok() && &buf == b"+PONG\r\n"
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("rediss://127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// The certificate authority of a TLS server (PEM).
    pub fn tls_ca(&self) -> Option<Vec<u8>> {
        self.tls.as_ref().map(super::tls::TlsFiles::ca_pem)
    }

    /// A plain async connection for inspecting the server from tests.
    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        let client = match self.tls_ca() {
            Some(ca) => redis::Client::build_with_tls(
                self.url(),
                redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(ca),
                },
            ),
            None => redis::Client::open(self.url()),
        };
        client
            .expect("client")
            .get_multiplexed_async_connection()
            .await
            .expect("connect to test redis")
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn signal(&self, signal: &str) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .args([signal, &pid.to_string()])
                .status();
            assert!(
                status.is_ok_and(|s| s.success()),
                "kill {signal} {pid} failed"
            );
        }
    }

    /// Kills the server (SIGKILL) and waits for it to exit.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A paused process must be resumed to die promptly on some kernels; SIGKILL works
            // on stopped processes, but wait() then needs it reaped.
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the server (SIGSTOP): connections stay open, nothing answers (a hung server).
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Resumes a paused server (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    /// Starts the server again on the same port (after [`kill`](Self::kill)).
    pub fn restart(&mut self) {
        self.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("could not restart redis-server on port {}", self.port);
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.resume();
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
