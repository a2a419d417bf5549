//! Duration strings in attributes: `"90s"`, `"1h30m"`, `"500ms"`, `"2d"`.

use std::time::Duration;

/// Parses a duration string; the error names the accepted forms.
pub(crate) fn parse(text: &str) -> Result<Duration, String> {
    const FORMS: &str =
        "expected a duration such as \"90s\", \"15m\", \"1h30m\", \"500ms\" or \"2d\"";
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(FORMS.into());
    }
    let mut total = Duration::ZERO;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(FORMS.into());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| FORMS.to_owned())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = match &rest[..unit_len] {
            "ms" => Duration::from_millis(1),
            "s" => Duration::from_secs(1),
            "m" => Duration::from_secs(60),
            "h" => Duration::from_secs(3600),
            "d" => Duration::from_secs(86_400),
            _ => return Err(FORMS.into()),
        };
        rest = &rest[unit_len..];
        total = unit
            .checked_mul(u32::try_from(number).map_err(|_| FORMS.to_owned())?)
            .and_then(|d| total.checked_add(d))
            .ok_or_else(|| "duration is too long".to_owned())?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compound_durations() {
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(172_800)));
        assert!(parse("10").is_err());
        assert!(parse("1x").is_err());
        assert!(parse("").is_err());
    }
}
