//! `redis-cached`: the fleet's view of a redis-cached namespace for operators, read from the
//! counters and hot keys every process flushes to Redis, and audited invalidation.
//!
//! ```text
//! redis-cached --url redis://cache:6379 --namespace myapp stats --window 5m
//! redis-cached -n myapp hot --top 5
//! redis-cached -n myapp memory
//! redis-cached -n myapp watch
//! redis-cached -n myapp invalidate --tag org:42
//! ```

mod args;
mod render;

use std::{
    io::{BufRead, IsTerminal, Write},
    process::ExitCode,
};

use cache_runtime::{Cache, Error};
use clap::Parser;

use crate::args::{Cli, Command, Invalidate};

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("redis-cached: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: &Cli) -> Result<(), String> {
    let cache = Cache::builder()
        .url(&cli.url)
        .namespace(&cli.namespace)
        // This process only reads: it must not count itself among the reporters.
        .fleet_telemetry(false)
        .operation_timeout(std::time::Duration::from_secs(2))
        .build()
        .await
        .map_err(|err| explain(&cli.url, err))?;
    let admin = cache.admin();
    let failed = |err: Error| explain(&cli.url, err);
    let out = match &cli.command {
        Command::Stats(window) => {
            let stats = admin.stats(window.window).await.map_err(failed)?;
            print(cli, &stats, render::stats)
        }
        Command::Hot { window, top } => {
            let sampled = admin.hot(window.window, *top).await.map_err(failed)?;
            let server = admin.server_hot_keys().await.map_err(failed)?;
            let hot = serde_json::json!({ "sampled": sampled, "server": server });
            if cli.json {
                serde_json::to_string_pretty(&hot).unwrap_or_default() + "\n"
            } else {
                render::hot(&sampled, &server, *top)
            }
        }
        Command::Memory { sample } => {
            let report = admin.memory(*sample).await.map_err(failed)?;
            print(cli, &report, render::memory)
        }
        Command::Audit { count } => {
            let records = admin.audit_log(*count).await.map_err(failed)?;
            print(cli, &records, |r| render::audit(r))
        }
        Command::Watch { window, every } => {
            let interrupted = tokio::signal::ctrl_c();
            tokio::pin!(interrupted);
            loop {
                let read = tokio::select! {
                    read = admin.stats(window.window) => read,
                    _ = &mut interrupted => break,
                };
                match read {
                    Ok(stats) if cli.json => {
                        println!("{}", serde_json::to_string(&stats).unwrap_or_default());
                    }
                    Ok(stats) => {
                        // Clear the screen and draw from its top, like `top`.
                        print!("\x1b[2J\x1b[H{}", render::stats(&stats));
                        let _ = std::io::stdout().flush();
                    }
                    // Redis away for a moment: said on stderr, tried again at the next refresh.
                    Err(err) if unreachable(&err) => {
                        eprintln!("redis-cached: {}", explain(&cli.url, err));
                    }
                    Err(err) => return Err(explain(&cli.url, err)),
                }
                tokio::select! {
                    _ = tokio::time::sleep(*every) => {}
                    _ = &mut interrupted => break,
                }
            }
            String::new()
        }
        Command::Invalidate(invalidate) => {
            self::invalidate(cli, &cache, invalidate).await?;
            String::new()
        }
    };
    print!("{out}");
    Ok(())
}

fn print<T: serde::Serialize + ?Sized>(
    cli: &Cli,
    value: &T,
    table: impl Fn(&T) -> String,
) -> String {
    if cli.json {
        serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
    } else {
        table(value)
    }
}

async fn invalidate(cli: &Cli, cache: &Cache, invalidate: &Invalidate) -> Result<(), String> {
    let admin = cache.admin();
    let failed = |err: Error| explain(&cli.url, err);
    if !invalidate.force && !admin.has_reporters().await.map_err(failed)? {
        return Err(format!(
            "no process has reported to namespace {:?} in the last hour; refusing to invalidate \
             (check --namespace; --force if its services run with fleet telemetry off)",
            cli.namespace
        ));
    }
    let what = match (&invalidate.targets.key, invalidate.targets.tags.as_slice()) {
        (Some(key), _) => format!("the entry {key}"),
        (None, tags) => format!("every entry tagged {}", tags.join(", ")),
    };
    if !invalidate.yes {
        if !std::io::stdin().is_terminal() {
            return Err("not on a terminal: pass --yes to invalidate without confirmation".into());
        }
        // On stderr: stdout stays the command's output (`--json`).
        eprint!("Invalidate {what} in namespace {:?}? [y/N] ", cli.namespace);
        let _ = std::io::stderr().flush();
        let mut answer = String::new();
        let _ = std::io::stdin().lock().read_line(&mut answer);
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            return Err("not confirmed; nothing invalidated".into());
        }
    }
    let who = operator();
    let existed = match &invalidate.targets.key {
        Some(key) => admin.invalidate_key(key, &who).await.map_err(failed)?,
        None => {
            admin
                .invalidate_tags(&invalidate.targets.tags, &who)
                .await
                .map_err(failed)?;
            true
        }
    };
    if cli.json {
        println!(
            "{}",
            serde_json::json!({ "invalidated": what, "by": who, "entry_existed": existed })
        );
    } else if existed {
        println!("invalidated {what} (recorded as {who})");
    } else {
        println!(
            "no entry was cached at that key (check the function's version and arguments); \
             loads in flight for it were refused anyway (recorded as {who})"
        );
    }
    Ok(())
}

/// Who runs this: `$USER@host`.
fn operator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("USERNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_else(|_| "unknown-host".into());
    format!("{user}@{host}")
}

/// Whether an error says Redis could not be reached (as opposed to a refusal or a bad option).
fn unreachable(err: &Error) -> bool {
    match err {
        Error::Backend(e) => {
            e.is_io_error() || e.is_connection_refusal() || e.is_connection_dropped()
        }
        Error::Timeout(_) | Error::Unavailable => true,
        _ => false,
    }
}

/// An error with what the operator should check; the URL without its password.
fn explain(url: &str, err: Error) -> String {
    let url = cache_runtime::redact_url(url);
    match err {
        err if unreachable(&err) => format!("cannot reach Redis at {url}: {err}"),
        // Says which URL itself, already redacted.
        err @ Error::Config(_) => err.to_string(),
        err => format!("{err} (Redis at {url})"),
    }
}
