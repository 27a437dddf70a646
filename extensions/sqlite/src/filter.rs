//! Row filters: an SQL expression over a table's bare column names, rewritten to
//! refer to `NEW."col"` or `OLD."col"` inside trigger `WHEN` clauses.
//!
//! The rewrite works on SQL tokens, so string literals, quoted identifiers, comments,
//! qualified names (`x.col`) and function calls (`lower(...)`) are left alone; only
//! identifiers that name a column of the table are qualified.

/// Qualifies every column reference in `expr` with `prefix` (`NEW` or `OLD`).
pub fn qualify(expr: &str, columns: &[String], prefix: &str) -> String {
    let tokens = tokenize(expr);
    let mut out = String::with_capacity(expr.len() + 16);
    for (i, tok) in tokens.iter().enumerate() {
        let name = match tok.kind {
            Kind::Word => Some(tok.text.to_string()),
            Kind::Quoted => Some(unquote(tok.text)),
            _ => None,
        };
        let prev = tokens[..i].iter().rev().find(|t| t.kind != Kind::Space);
        let next = tokens[i + 1..].iter().find(|t| t.kind != Kind::Space);
        let qualified = prev.is_some_and(|p| p.text == ".");
        let is_call = tok.kind == Kind::Word && next.is_some_and(|n| n.text == "(");
        match name {
            Some(n) if !qualified && !is_call && columns.iter().any(|c| c.eq_ignore_ascii_case(&n)) => {
                out.push_str(prefix);
                out.push('.');
                out.push_str(&crate::sql::ident(&n));
            }
            _ => out.push_str(tok.text),
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Space,
    Word,
    Quoted,
    Literal,
    Other,
}

struct Token<'a> {
    kind: Kind,
    text: &'a str,
}

fn unquote(q: &str) -> String {
    let (open, close) = (q.chars().next().unwrap_or('"'), q.chars().last().unwrap_or('"'));
    let inner = &q[open.len_utf8()..q.len() - close.len_utf8()];
    match open {
        '"' => inner.replace("\"\"", "\""),
        '`' => inner.replace("``", "`"),
        _ => inner.to_string(),
    }
}

fn tokenize(s: &str) -> Vec<Token<'_>> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let start = i;
        let c = b[i];
        let kind = if c.is_ascii_whitespace() {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            Kind::Space
        } else if c == b'-' && b.get(i + 1) == Some(&b'-') {
            while i < b.len() && b[i] != b'\n' {
                i += 1;
            }
            Kind::Space
        } else if c == b'/' && b.get(i + 1) == Some(&b'*') {
            i += 2;
            while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                i += 1;
            }
            i = (i + 2).min(b.len());
            Kind::Space
        } else if c == b'\'' || c == b'"' || c == b'`' || c == b'[' {
            let close = if c == b'[' { b']' } else { c };
            i += 1;
            loop {
                if i >= b.len() {
                    break;
                }
                if b[i] == close {
                    // Doubled quote inside the token (not for brackets).
                    if close != b']' && b.get(i + 1) == Some(&close) {
                        i += 2;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            if c == b'\'' {
                Kind::Literal
            } else {
                Kind::Quoted
            }
        } else if c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                i += 1;
            }
            Kind::Word
        } else if c.is_ascii_digit() {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'.') {
                i += 1;
            }
            Kind::Other
        } else {
            i += 1;
            // Keep multi-byte UTF-8 sequences whole.
            while i < b.len() && !s.is_char_boundary(i) {
                i += 1;
            }
            Kind::Other
        };
        out.push(Token { kind, text: &s[start..i] });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cols() -> Vec<String> {
        vec!["status".into(), "owner id".into(), "n".into()]
    }

    #[test]
    fn qualifies_only_column_references() {
        let q = qualify("status = 'status' AND \"owner id\" = lower(n) AND x.status = 1", &cols(), "NEW");
        assert_eq!(q, "NEW.\"status\" = 'status' AND NEW.\"owner id\" = lower(NEW.\"n\") AND x.status = 1");
    }

    #[test]
    fn leaves_comments_and_functions() {
        let q = qualify("n > 0 -- n is a count\n AND status(1)", &cols(), "OLD");
        assert_eq!(q, "OLD.\"n\" > 0 -- n is a count\n AND status(1)");
    }

    #[test]
    fn unterminated_tokens_do_not_panic() {
        let _ = qualify("'abc", &cols(), "NEW");
        let _ = qualify("\"abc", &cols(), "NEW");
        let _ = qualify("/* x", &cols(), "NEW");
        let _ = qualify("é = status", &cols(), "NEW");
    }
}
