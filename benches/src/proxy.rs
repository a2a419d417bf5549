//! A delaying TCP proxy, so Redis can sit behind a realistic network round trip on one machine
//! (`tc netem` is not available here). Each direction of each connection has a reader thread
//! and a writer thread; every chunk read is written `one_way` later, so requests stay
//! pipelined and only latency is added. Threads and `std::thread::sleep` keep the delay
//! accurate to tens of microseconds, where Tokio's timer would round it to a millisecond.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

/// A running proxy; its threads end with the process.
pub struct DelayProxy {
    port: u16,
}

impl DelayProxy {
    /// Proxies a new loopback port to `upstream`, adding `one_way` in each direction.
    pub fn start(upstream: u16, one_way: Duration) -> DelayProxy {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind proxy");
        let port = listener.local_addr().expect("proxy address").port();
        thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else {
                    continue;
                };
                let _ = (client.set_nodelay(true), server.set_nodelay(true));
                let (Ok(client2), Ok(server2)) = (client.try_clone(), server.try_clone()) else {
                    continue;
                };
                relay(client, server2, one_way);
                relay(server, client2, one_way);
            }
        });
        DelayProxy { port }
    }

    /// `redis://` URL of the proxy.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

/// Copies `from` to `to`, each chunk `delay` after it was read.
fn relay(mut from: TcpStream, mut to: TcpStream, delay: Duration) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if chunks
                        .send((Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
    });
    thread::spawn(move || {
        while let Ok((at, bytes)) = due.recv() {
            let now = Instant::now();
            if at > now {
                thread::sleep(at - now);
            }
            if to.write_all(&bytes).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}
