//! What `to` in a send names: one peer, a topic (`#name`), or a broadcast (`*`).
//!
//! One parser for the broker, `peers-mcp` and the CLI, so a name means the same thing
//! wherever it is typed. Peer names can never start with `#` or `*`
//! ([`crate::identity::is_reserved_name`]), so the three never overlap.

/// The longest topic name, in bytes (without the `#`).
pub const MAX_TOPIC_LEN: usize = 64;

/// A send's recipient, as the sender wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recipient {
    /// A peer id, name or `name@host` (resolved by the broker).
    Peer(String),
    /// A topic, by its normalised name (lowercase, without the `#`).
    Topic(String),
    /// `*`: every live peer in a scope.
    Broadcast,
}

impl Recipient {
    /// Reads `to`. Errors are sentences naming the fix, for a 400 or a tool result.
    pub fn parse(to: &str) -> Result<Recipient, String> {
        let to = to.trim();
        if to.is_empty() {
            return Err(
                "`to` is empty: name a peer, name@host or id, a #topic, or * for everyone".into(),
            );
        }
        if to == "*" {
            return Ok(Recipient::Broadcast);
        }
        if let Some(name) = to.strip_prefix('#') {
            return topic_name(name).map(Recipient::Topic);
        }
        if to.starts_with('*') {
            return Err(format!(
                "{to:?} is not a recipient: `*` alone is a broadcast (choose who with `scope`)"
            ));
        }
        Ok(Recipient::Peer(to.to_string()))
    }

    /// How it reads in texts and history: the peer as given, `#topic`, or `*`.
    pub fn label(&self) -> String {
        match self {
            Recipient::Peer(p) => p.clone(),
            Recipient::Topic(t) => format!("#{t}"),
            Recipient::Broadcast => "*".into(),
        }
    }
}

/// Normalises and checks a topic name given with or without its `#`: lowercased, then 1-64
/// of `a-z`, `0-9`, `-`, `_`, `:`, `.`, starting with a letter or digit.
pub fn topic_name(name: &str) -> Result<String, String> {
    let raw = name.trim();
    let name = raw.strip_prefix('#').unwrap_or(raw).to_ascii_lowercase();
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "-_:.".contains(c);
    let starts_well = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name == "*" || raw == "*" {
        return Err("`*` is the broadcast, not a topic: subscribe to a #topic by name".into());
    }
    if name.is_empty() || name.len() > MAX_TOPIC_LEN || !starts_well || !name.chars().all(allowed) {
        return Err(format!(
            "{raw:?} is not a topic name: use 1-{MAX_TOPIC_LEN} of a-z, 0-9, '-', '_', ':', '.', \
             starting with a letter or digit, e.g. #myproj:events"
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_parse() {
        assert_eq!(
            Recipient::parse("api").unwrap(),
            Recipient::Peer("api".into())
        );
        assert_eq!(
            Recipient::parse(" #MyProj:events ").unwrap(),
            Recipient::Topic("myproj:events".into())
        );
        assert_eq!(Recipient::parse("*").unwrap(), Recipient::Broadcast);
        assert!(Recipient::parse("*all").unwrap_err().contains("broadcast"));
        assert!(Recipient::parse("  ").unwrap_err().contains("empty"));
        assert_eq!(Recipient::Topic("t".into()).label(), "#t");
    }

    #[test]
    fn topic_names_are_checked() {
        assert_eq!(topic_name("deploys").unwrap(), "deploys");
        assert_eq!(topic_name("#a.b_c-d:e9").unwrap(), "a.b_c-d:e9");
        for bad in ["", "#", "-x", "has space", "ümlaut", "a/b", &"x".repeat(65)] {
            let e = topic_name(bad).unwrap_err();
            assert!(e.contains("not a topic name"), "{bad:?}: {e}");
        }
        assert!(topic_name("*").unwrap_err().contains("broadcast"));
    }
}
