//! What each sentinel says of the master, and which view to follow.

use std::collections::HashMap;

/// One sentinel's view of the master.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct View {
    pub(super) host: String,
    pub(super) port: u16,
    /// Bumped by every failover; the newest view wins.
    pub(super) config_epoch: u64,
}

/// A sentinel's view: the epoch from `SENTINEL MASTER`'s flat list of fields and values, the
/// address from `GET-MASTER-ADDR-BY-NAME` (during a failover the former still shows the old
/// address with the new epoch; the latter shows the promoted replica).
pub(super) fn parse_view(fields: &[String], addr: Option<(String, u16)>) -> Option<View> {
    let map: HashMap<&str, &str> = fields
        .chunks_exact(2)
        .map(|pair| (pair[0].as_str(), pair[1].as_str()))
        .collect();
    let (host, port) = addr?;
    Some(View {
        host,
        port,
        config_epoch: map.get("config-epoch")?.parse().ok()?,
    })
}

/// The view to follow among the sentinels' answers: the highest `config-epoch`, and of views
/// at that epoch the one most sentinels share; with how many share it.
pub(super) fn newest(views: &[View]) -> Option<(&View, usize)> {
    let top = views.iter().map(|v| v.config_epoch).max()?;
    views
        .iter()
        .filter(|v| v.config_epoch == top)
        .map(|v| (v, views.iter().filter(|w| *w == v).count()))
        .max_by_key(|(_, n)| *n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(host: &str, port: u16, config_epoch: u64) -> View {
        View {
            host: host.into(),
            port,
            config_epoch,
        }
    }

    #[test]
    fn the_newest_view_wins_and_ties_go_to_the_most_sentinels() {
        let fields: Vec<String> = [
            "name",
            "mymaster",
            "ip",
            "fd00::5",
            "port",
            "6380",
            "flags",
            "master",
            "config-epoch",
            "7",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let addr = || Some(("fd00::6".to_owned(), 6381));
        assert_eq!(
            parse_view(&fields, addr()),
            Some(view("fd00::6", 6381, 7)),
            "the address from GET-MASTER-ADDR-BY-NAME, the epoch from MASTER"
        );
        assert_eq!(parse_view(&fields[..4], addr()), None);
        assert_eq!(parse_view(&fields, None), None);
        // A sentinel that missed the failover (epoch 1) is outvoted by one that saw it.
        let views = [view("a", 1, 1), view("b", 2, 2), view("a", 1, 1)];
        assert_eq!(newest(&views), Some((&views[1], 1)));
        let views = [view("a", 1, 3), view("b", 2, 3), view("b", 2, 3)];
        assert_eq!(newest(&views), Some((&views[1], 2)));
        assert_eq!(newest(&[]), None);
    }
}
