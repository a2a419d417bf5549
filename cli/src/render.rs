//! Tables for people; `--json` prints the library's report types instead.

use cache_runtime::admin::{AuditRecord, FleetStats, HotKey, MemoryReport, ServerHotKeys};

/// Left-aligned first column, right-aligned others, two spaces apart.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i == 0 {
                out.push_str(&format!("{cell:<width$}"));
            } else {
                out.push_str(&format!("  {cell:>width$}"));
            }
        }
        out.trim_end().to_owned() + "\n"
    };
    let mut out = line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        out.push_str(&line(row.clone()));
    }
    out
}

fn ms(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| {
        if v < 10.0 {
            format!("{v:.2}ms")
        } else {
            format!("{v:.0}ms")
        }
    })
}

fn bytes(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}

pub fn stats(stats: &FleetStats) -> String {
    let rows: Vec<Vec<String>> = stats
        .functions
        .iter()
        .map(|f| {
            vec![
                f.function.clone(),
                format!("{:.1}", f.calls_per_sec),
                format!("{:.1}%", f.hit_rate * 100.0),
                format!("{:.1}%", f.l1_share * 100.0),
                format!("{:.2}", f.loads_per_sec),
                ms(f.load_p50_ms),
                ms(f.load_p99_ms),
                f.errors.to_string(),
            ]
        })
        .collect();
    let mut out = format!(
        "namespace {}: {} cache(s) reporting, last {} s\n\n",
        stats.namespace, stats.processes, stats.window_secs
    );
    if rows.is_empty() {
        out.push_str("no calls counted in this window\n");
        return out;
    }
    out + &table(
        &[
            "function", "calls/s", "hit rate", "l1 share", "loads/s", "load p50", "load p99",
            "errors",
        ],
        &rows,
    )
}

pub fn hot(keys: &[HotKey], server: &ServerHotKeys, top: usize) -> String {
    let mut out = if keys.is_empty() {
        "no hot keys sampled in this window\n".to_owned()
    } else {
        let rows: Vec<Vec<String>> = keys
            .iter()
            .map(|k| {
                vec![
                    k.key.clone(),
                    k.function.clone(),
                    k.reads.to_string(),
                    format!("+{}", k.error),
                ]
            })
            .collect();
        table(&["key", "function", "reads (est.)", "overcount ≤"], &rows)
    };
    out.push_str("\nserver (HOTKEYS): ");
    match server {
        ServerHotKeys::Unsupported => {
            out.push_str("not available on this server (Redis 8.6+, Valkey 9.2+)\n")
        }
        ServerHotKeys::NoSession => out.push_str(
            "no tracking session (an operator starts one with HOTKEYS START; it costs the server)\n",
        ),
        ServerHotKeys::Keys {
            active,
            by_cpu_time_us,
            by_net_bytes,
        } => {
            out.push_str(if *active {
                "session running\n"
            } else {
                "last session\n"
            });
            let rows: Vec<Vec<String>> = by_cpu_time_us
                .iter()
                .take(top)
                .map(|(key, us)| vec![key.clone(), format!("{us} µs CPU")])
                .chain(
                    by_net_bytes
                        .iter()
                        .take(top)
                        .map(|(key, bytes)| vec![key.clone(), format!("{bytes} B net")]),
                )
                .collect();
            out.push_str(&table(&["key", "server measure"], &rows));
        }
        ServerHotKeys::Unavailable { reason } => {
            out.push_str(&format!("not available ({reason})\n"))
        }
        _ => out.push_str("not understood\n"),
    }
    out
}

pub fn memory(report: &MemoryReport) -> String {
    let rows: Vec<Vec<String>> = report
        .functions
        .iter()
        .map(|f| {
            vec![
                f.function.clone(),
                f.entries.to_string(),
                bytes(f.bytes),
                format!("{}/{}", f.sampled, f.entries),
                format!(
                    "{}s / {}s / {}s",
                    f.ttl_secs[0], f.ttl_secs[1], f.ttl_secs[2]
                ),
                f.largest
                    .first()
                    .map_or("-".into(), |(_, size)| bytes(*size)),
            ]
        })
        .collect();
    let mut out = format!(
        "namespace {}: {} keys ({} tag, {} lock/generation)\n\n",
        report.namespace, report.keys, report.tag_keys, report.lock_keys
    );
    out.push_str(&table(
        &[
            "function",
            "entries",
            "bytes (est.)",
            "sampled",
            "ttl min/med/max",
            "largest",
        ],
        &rows,
    ));
    out.push_str(&format!(
        "\nserver: used_memory {}, maxmemory {}, maxmemory-policy {}\n",
        bytes(report.used_memory),
        if report.maxmemory == 0 {
            "0 (no limit)".into()
        } else {
            bytes(report.maxmemory)
        },
        report.maxmemory_policy
    ));
    for advice in &report.advice {
        out.push_str(&format!("advice: {advice}\n"));
    }
    out
}

pub fn audit(records: &[AuditRecord]) -> String {
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.at_ms.to_string(),
                r.who.clone(),
                r.what.clone(),
                r.outcome.clone(),
            ]
        })
        .collect();
    table(&["at (ms since epoch)", "who", "what", "outcome"], &rows)
}
