//! Passwords out of URLs shown in messages and `Debug` output.

/// `url` with its password (if any) replaced by `***`, for messages and `Debug` output:
/// `redis://user:secret@host` becomes `redis://user:***@host`, and a `pass=` or `password=`
/// query parameter (how `redis+unix://` URLs carry one) is blanked too. A URL that does not
/// parse is shown as its scheme alone when it could hold a password.
///
/// ```
/// use cache_runtime::redact_url;
///
/// assert_eq!(redact_url("redis://ops:s3cret@cache:6379/0"), "redis://ops:***@cache:6379/0");
/// assert_eq!(
///     redact_url("redis+unix:///run/redis.sock?pass=s3cret&db=1"),
///     "redis+unix:///run/redis.sock?pass=***&db=1"
/// );
/// assert_eq!(redact_url("redis://cache:6379"), "redis://cache:6379");
/// ```
pub fn redact_url(url: &str) -> String {
    let secret_query = |key: &str| matches!(key, "pass" | "password");
    let Ok(mut parsed) = url::Url::parse(url) else {
        let scheme = url.split_once("://").map_or("", |(scheme, _)| scheme);
        return if url.contains('@') || url.contains("pass") {
            format!("{scheme}://<redacted>")
        } else {
            url.to_owned()
        };
    };
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query_pairs().any(|(key, _)| secret_query(&key)) {
        let pairs: Vec<(String, String)> = parsed
            .query_pairs()
            .map(|(key, value)| {
                let value = if secret_query(&key) {
                    "***".to_owned()
                } else {
                    value.into_owned()
                };
                (key.into_owned(), value)
            })
            .collect();
        parsed.query_pairs_mut().clear().extend_pairs(pairs);
    }
    parsed.to_string()
}
