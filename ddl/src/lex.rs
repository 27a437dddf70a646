//! SQLite's lexical rules, as far as schema statements need them.

use super::DdlError;

/// A token of SQLite SQL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Tok {
    /// A bare word: a keyword or an unquoted identifier (as written).
    Word(String),
    /// A quoted identifier: `"x"`, `[x]` or `` `x` `` (unescaped).
    Quoted(String),
    /// A string literal `'x'` (unescaped).
    Str(String),
    /// A blob literal `X'…'` (the hex digits).
    Blob(String),
    /// A numeric literal (as written).
    Num(String),
    /// An operator or punctuation.
    Punct(String),
}

impl Tok {
    /// Whether this is the bare word `kw` (ASCII case-insensitive).
    pub fn is(&self, kw: &str) -> bool {
        matches!(self, Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    /// Whether this is the punctuation `p`.
    pub fn is_punct(&self, p: &str) -> bool {
        matches!(self, Tok::Punct(x) if x == p)
    }
}

/// A token and the line it starts on (1-based), for error messages.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Spanned {
    /// The token.
    pub tok: Tok,
    /// Line number.
    pub line: usize,
}

const MULTI: [&str; 8] = ["<=", ">=", "<>", "!=", "==", "||", "<<", ">>"];

/// Splits SQL into tokens, dropping whitespace and comments.
pub fn lex(sql: &str) -> Result<Vec<Spanned>, DdlError> {
    let chars: Vec<char> = sql.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let err = |line: usize, message: &str| DdlError::Syntax { line, message: message.to_string() };
    while i < chars.len() {
        let c = chars[i];
        let start_line = line;
        if c == '\n' {
            line += 1;
            i += 1;
            continue;
        }
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c == '-' && chars.get(i + 1) == Some(&'-') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
            continue;
        }
        if c == '/' && chars.get(i + 1) == Some(&'*') {
            i += 2;
            while i < chars.len() && !(chars[i] == '*' && chars.get(i + 1) == Some(&'/')) {
                if chars[i] == '\n' {
                    line += 1;
                }
                i += 1;
            }
            i += 2;
            continue;
        }
        // Quoted: the closing character doubled is an escaped one (not for brackets).
        let quoted = |open: char, close: char, i: &mut usize, line: &mut usize| -> Result<String, DdlError> {
            let mut s = String::new();
            *i += 1;
            loop {
                match chars.get(*i) {
                    None => return Err(err(start_line, &format!("unterminated {open}…{close}"))),
                    Some(&ch) if ch == close => {
                        if close != ']' && chars.get(*i + 1) == Some(&close) {
                            s.push(close);
                            *i += 2;
                        } else {
                            *i += 1;
                            return Ok(s);
                        }
                    }
                    Some(&ch) => {
                        if ch == '\n' {
                            *line += 1;
                        }
                        s.push(ch);
                        *i += 1;
                    }
                }
            }
        };
        let tok = match c {
            '\'' => Tok::Str(quoted('\'', '\'', &mut i, &mut line)?),
            '"' => Tok::Quoted(quoted('"', '"', &mut i, &mut line)?),
            '`' => Tok::Quoted(quoted('`', '`', &mut i, &mut line)?),
            '[' => Tok::Quoted(quoted('[', ']', &mut i, &mut line)?),
            'x' | 'X' if chars.get(i + 1) == Some(&'\'') => {
                i += 1;
                let hex = quoted('\'', '\'', &mut i, &mut line)?;
                if hex.len() % 2 != 0 || !hex.chars().all(|h| h.is_ascii_hexdigit()) {
                    return Err(err(start_line, &format!("malformed blob literal X'{hex}'")));
                }
                Tok::Blob(hex)
            }
            _ if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit)) => {
                let start = i;
                if c == '0' && matches!(chars.get(i + 1), Some('x' | 'X')) {
                    i += 2;
                    while chars.get(i).is_some_and(char::is_ascii_hexdigit) {
                        i += 1;
                    }
                } else {
                    while chars.get(i).is_some_and(|ch| ch.is_ascii_digit() || *ch == '.') {
                        i += 1;
                    }
                    if matches!(chars.get(i), Some('e' | 'E')) {
                        i += 1;
                        if matches!(chars.get(i), Some('+' | '-')) {
                            i += 1;
                        }
                        while chars.get(i).is_some_and(char::is_ascii_digit) {
                            i += 1;
                        }
                    }
                }
                Tok::Num(chars[start..i].iter().collect())
            }
            _ if c.is_alphabetic() || c == '_' || !c.is_ascii() => {
                let start = i;
                while chars.get(i).is_some_and(|ch| ch.is_alphanumeric() || *ch == '_' || *ch == '$' || !ch.is_ascii())
                {
                    i += 1;
                }
                Tok::Word(chars[start..i].iter().collect())
            }
            _ => {
                let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
                if MULTI.contains(&two.as_str()) {
                    i += 2;
                    Tok::Punct(two)
                } else if "(),;.+-*/%<>=&|~!".contains(c) {
                    i += 1;
                    Tok::Punct(c.to_string())
                } else {
                    return Err(err(start_line, &format!("unexpected character '{c}'")));
                }
            }
        };
        out.push(Spanned { tok, line: start_line });
    }
    Ok(out)
}

/// `"name"`, with `"` doubled: an identifier quoted the way both SQLite and PostgreSQL
/// read it back.
pub fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(sql: &str) -> Vec<Tok> {
        lex(sql).unwrap().into_iter().map(|s| s.tok).collect()
    }

    #[test]
    fn quoting_styles_comments_and_literals() {
        assert_eq!(
            toks("[Order Details]INTEGER -- note\n \"a\"\"b\" `c``d` 'it''s' X'00ff' /* x */ -1.5e3 a<=b"),
            vec![
                Tok::Quoted("Order Details".into()),
                Tok::Word("INTEGER".into()),
                Tok::Quoted("a\"b".into()),
                Tok::Quoted("c`d".into()),
                Tok::Str("it's".into()),
                Tok::Blob("00ff".into()),
                Tok::Punct("-".into()),
                Tok::Num("1.5e3".into()),
                Tok::Word("a".into()),
                Tok::Punct("<=".into()),
                Tok::Word("b".into()),
            ]
        );
    }

    #[test]
    fn unterminated_input_is_an_error_with_its_line() {
        assert_eq!(
            lex("CREATE\nTABLE 'x").unwrap_err(),
            DdlError::Syntax { line: 2, message: "unterminated '…'".into() }
        );
        assert!(lex("X'0'").is_err());
    }
}
