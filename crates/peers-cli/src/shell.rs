//! Just enough of `/bin/sh` word splitting to find the program a hook command runs.

/// The first word of a shell command line, with quotes and backslashes removed. Handles
/// `'…'` (as `claude_settings::shell_quote` writes), `"…"` and `\x`.
pub fn first_word(cmd: &str) -> String {
    let mut out = String::new();
    let mut chars = cmd.trim_start().chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if c.is_whitespace() => break,
            '\'' => {
                for c in chars.by_ref() {
                    if c == '\'' {
                        break;
                    }
                    out.push(c);
                }
            }
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        '\\' => {
                            if let Some(&n) = chars.peek()
                                && matches!(n, '"' | '\\' | '$' | '`')
                            {
                                out.push(n);
                                chars.next();
                            } else {
                                out.push('\\');
                            }
                        }
                        c => out.push(c),
                    }
                }
            }
            '\\' => {
                if let Some(n) = chars.next() {
                    out.push(n);
                }
            }
            c => out.push(c),
        }
    }
    out
}

/// The file name of the program a command line runs (`peers-deliver` for
/// `'/opt/my bin/peers-deliver' --wait`).
pub fn program_name(cmd: &str) -> String {
    let w = first_word(cmd);
    std::path::Path::new(&w)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use peers_core::claude_settings::shell_quote;

    #[test]
    fn first_words() {
        assert_eq!(first_word("/usr/bin/x --wait"), "/usr/bin/x");
        assert_eq!(first_word("  '/a b/it'\\''s' --wait"), "/a b/it's");
        assert_eq!(first_word(&shell_quote("/a b/it's")), "/a b/it's");
        assert_eq!(first_word(r#""/x y/\"z" arg"#), "/x y/\"z");
        assert_eq!(first_word(r"/x\ y/z arg"), "/x y/z");
        assert_eq!(
            program_name("'/opt/my bin/peers-deliver' --wait"),
            "peers-deliver"
        );
        assert_eq!(
            program_name("${CLAUDE_PLUGIN_ROOT}/bin/peers-deliver"),
            "peers-deliver"
        );
        assert_eq!(program_name("echo hi"), "echo");
    }
}
