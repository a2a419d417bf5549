//! The command line, as clap reads it.

use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Fleet hit rates, hot keys and memory of a redis-cached namespace, and audited invalidation.
#[derive(Debug, Parser)]
#[command(name = "redis-cached", version)]
pub struct Cli {
    /// The Redis the services cache in.
    #[arg(
        long,
        env = "REDIS_URL",
        default_value = "redis://127.0.0.1:6379",
        global = true
    )]
    pub url: String,
    /// The services' namespace (`CacheBuilder::namespace`).
    #[arg(
        long,
        short,
        env = "REDIS_CACHED_NAMESPACE",
        default_value = "cache",
        global = true
    )]
    pub namespace: String,
    /// JSON instead of tables, for scripts.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Per function: calls/s, hit rate, first-level share, loads/s, load p50/p99, errors.
    Stats(Window),
    /// The hottest keys of each function, merged over the fleet.
    Hot {
        #[command(flatten)]
        window: Window,
        /// Keys shown per function.
        #[arg(long, default_value_t = 10)]
        top: usize,
    },
    /// Entries, bytes and TTLs per function (sampled), with the server's eviction policy.
    Memory {
        /// Entries measured per function.
        #[arg(long, default_value_t = 200)]
        sample: usize,
    },
    /// `stats`, refreshed in place until interrupted.
    Watch {
        #[command(flatten)]
        window: Window,
        /// How often to refresh.
        #[arg(long, default_value = "2s", value_parser = parse_duration)]
        every: Duration,
    },
    /// Invalidates entries through the library (generations, tags), recorded in the audit
    /// stream.
    Invalidate(Invalidate),
    /// The newest operator actions from the audit stream.
    Audit {
        /// Records shown.
        #[arg(long, default_value_t = 20)]
        count: usize,
    },
}

#[derive(Debug, Args)]
pub struct Window {
    /// How far back to sum (`30s`, `5m`, `1h`; whole 10 s buckets; at most 1 h is kept).
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub window: Duration,
}

#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Targets {
    /// Tags to invalidate (every entry carrying one).
    #[arg(long = "tag", value_name = "TAG", num_args = 1..)]
    pub tags: Vec<String>,
    /// One exact entry key (`hot` shows them); no globs.
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
}

#[derive(Debug, Args)]
pub struct Invalidate {
    #[command(flatten)]
    pub targets: Targets,
    /// Do not ask for confirmation (required when not on a terminal).
    #[arg(long, short)]
    pub yes: bool,
    /// Invalidate even when no process has reported to the namespace in the last hour
    /// (services running with fleet telemetry off, or a mistyped --namespace).
    #[arg(long)]
    pub force: bool,
}

/// `250ms`, `30s`, `5m`, `1h`, or whole seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 30s, 5m or 1h"))?;
    let scaled = |by: u64| {
        number
            .checked_mul(by)
            .map(Duration::from_secs)
            .ok_or_else(|| format!("{text:?} is too long"))
    };
    let duration = match unit {
        "" | "s" => Duration::from_secs(number),
        "ms" => Duration::from_millis(number),
        "m" => scaled(60)?,
        "h" => scaled(3600)?,
        _ => return Err(format!("{text:?}: the unit must be ms, s, m or h")),
    };
    if duration.is_zero() {
        return Err("the duration must be greater than zero".into());
    }
    Ok(duration)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert!(parse_duration("0s").is_err());
        assert!(parse_duration("5 parsecs").is_err());
        assert!(parse_duration("18446744073709551615h").is_err());
    }
}
