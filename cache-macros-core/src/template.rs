//! Key templates: `"user:{id}"`, `"org:{org.id}:user:{user_id}"`.

/// One piece of a template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece {
    Literal(String),
    /// `{root.field.field}`.
    Value {
        root: String,
        fields: Vec<String>,
    },
}

/// Characters that may continue an interpolated value's encoding; a literal right after a
/// placeholder must not start with one, or two argument tuples could render the same key.
fn continues_value(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '.' | '-' | '+' | '@')
}

/// Splits a key template into pieces, or says what is wrong with it. Besides being well formed,
/// a key template must use an argument, and each placeholder must be followed by a separator
/// that cannot continue the value's encoding.
pub(crate) fn parse(template: &str) -> Result<Vec<Piece>, String> {
    let pieces = split(template)?;
    for pair in pieces.windows(2) {
        if let [Piece::Value { .. }, next] = pair {
            let starts_badly = match next {
                Piece::Value { .. } => true,
                Piece::Literal(text) => text.starts_with(continues_value),
            };
            if starts_badly {
                return Err(
                    "placeholders must be followed by a separator such as `:` or `/` (not a letter, digit, `_`, `.`, `-`, `+` or `@`), \
                     so that different arguments cannot render the same key"
                        .into(),
                );
            }
        }
    }
    if !pieces.iter().any(|p| matches!(p, Piece::Value { .. })) {
        return Err("key template uses no argument, so every call would share one entry; add a `{argument}` placeholder".into());
    }
    Ok(pieces)
}

/// Splits a template into literal text and `{argument.field}` placeholders.
pub(crate) fn split(template: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut rest = template;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            Some(at) if rest[at..].starts_with('}') => {
                return Err(
                    "unmatched `}` in key template; braces only delimit `{argument}` placeholders"
                        .into(),
                );
            }
            Some(at) => {
                if at > 0 {
                    pieces.push(Piece::Literal(rest[..at].to_owned()));
                }
                let close = rest[at..]
                    .find('}')
                    .ok_or_else(|| "unclosed `{` in key template".to_owned())?
                    + at;
                let inner = rest[at + 1..close].trim();
                let mut parts = inner.split('.');
                let root = parts.next().unwrap_or_default().to_owned();
                let fields: Vec<String> = parts.map(str::to_owned).collect();
                // What Rust accepts as an identifier (`²` is alphanumeric but not one), and tuple
                // indexes that fit a `u32`: anything else would reach the token constructors.
                // Parsed back to itself: `parse_str` skips spaces and comments (`{a /**/}`).
                let is_ident =
                    |s: &str| syn::parse_str::<syn::Ident>(s).is_ok_and(|ident| ident == s);
                let is_index =
                    |s: &str| s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u32>().is_ok();
                if !(is_ident(&root) || root == "self")
                    || !fields.iter().all(|f| is_ident(f) || is_index(f))
                {
                    return Err(format!(
                        "`{{{inner}}}` is not a placeholder; expected `{{argument}}` or `{{argument.field}}`"
                    ));
                }
                pieces.push(Piece::Value { root, fields });
                rest = &rest[close + 1..];
            }
            None => {
                pieces.push(Piece::Literal(rest.to_owned()));
                rest = "";
            }
        }
    }
    Ok(pieces)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_what_is_not_an_identifier_or_an_index() {
        for odd in [
            "{a.4294967296}",
            "{a²}",
            "{a.b²}",
            "{type}",
            "{a.+1}",
            "{1a}",
            "{a..b}",
            "{}",
            "{a .b}",
            "{a/**/}",
        ] {
            assert!(split(odd).is_err(), "{odd} is rejected");
        }
        assert!(split("{self.tenant}:{a.0}:{r#type}").is_ok());
    }

    #[test]
    fn parses_placeholders_and_fields() {
        assert_eq!(
            parse("user:{id}/{org.id}").ok(),
            Some(vec![
                Piece::Literal("user:".into()),
                Piece::Value {
                    root: "id".into(),
                    fields: vec![]
                },
                Piece::Literal("/".into()),
                Piece::Value {
                    root: "org".into(),
                    fields: vec!["id".into()]
                },
            ])
        );
    }

    #[test]
    fn rejects_ambiguous_and_malformed_templates() {
        assert!(parse("{a}{b}").is_err());
        assert!(parse("{a}1{b}").is_err());
        assert!(parse("{a}-{b}").is_err());
        assert!(parse("user:{").is_err());
        assert!(parse("user}").is_err());
        assert!(parse("{1a}").is_err());
        assert!(parse("static").is_err());
        assert!(parse("{a}:{b}").is_ok());
        assert!(split("static").is_ok(), "tags may be fixed strings");
        assert!(split("{a}{b}").is_ok(), "tags render verbatim");
    }
}
