//! Expressions and defaults: SQLite's tokens rewritten for PostgreSQL, or refused.

use super::*;

impl Translator {
    pub(super) fn default(&mut self, t: &Table, c: &Column, ty: PgType, toks: &[Tok]) -> Option<String> {
        let refuse = |me: &mut Self, detail: &str| {
            let shown = toks.iter().map(shown).collect::<Vec<_>>().join(" ");
            me.refuse(Reason::Default, &t.name, Some(&c.name), &format!("DEFAULT {shown}"), detail);
            None
        };
        // `CAST(<time> AS INT)`: the same time, already an integer.
        if let [Tok::Word(cast), Tok::Punct(open), inner @ .., Tok::Word(as_), Tok::Word(int), Tok::Punct(close)] = toks
        {
            if cast.eq_ignore_ascii_case("CAST")
                && open == "("
                && as_.eq_ignore_ascii_case("AS")
                && close == ")"
                && pg_type(int) == Some(PgType::Bigint)
                && ty == PgType::Bigint
            {
                return self.default(t, c, ty, inner);
            }
        }
        let now_text = |fmt: &str| format!("to_char(now() AT TIME ZONE 'UTC', '{fmt}')");
        // Words lower-cased, strings as written (`%M` is not `%m`).
        let joined: String = toks
            .iter()
            .map(|t| match t {
                Tok::Word(w) => w.to_ascii_lowercase(),
                t => shown(t),
            })
            .collect();
        // The local time of the machine inserting the row: a device fills the column
        // itself when it inserts (the default is evaluated there), so this default only
        // ever runs for rows inserted directly in PostgreSQL, whose local time is the
        // server's (its `TimeZone` setting).
        if joined == "datetime('now','localtime')" {
            if ty != PgType::Text {
                return refuse(self, &format!("this time default does not fit a {} column", ty.sql()));
            }
            self.notes.push(format!(
                "table \"{}\", column \"{}\": DEFAULT datetime('now', 'localtime') is the local time of the \
                 machine inserting the row: the server's (its TimeZone setting) for rows inserted in PostgreSQL",
                t.name, c.name
            ));
            return Some("to_char(now(), 'YYYY-MM-DD HH24:MI:SS')".into());
        }
        // Time defaults: spelled the way SQLite would have stored them.
        let time = match joined.as_str() {
            "current_timestamp"
            | "datetime('now')"
            | "datetime('now','utc')"
            | "strftime('%Y-%m-%d %H:%M:%S','now')" => Some((PgType::Text, now_text("YYYY-MM-DD HH24:MI:SS"))),
            "strftime('%Y-%m-%dT%H:%M:%fZ','now')" => {
                Some((PgType::Text, now_text("YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"")))
            }
            "strftime('%Y-%m-%d %H:%M:%f','now')" => Some((PgType::Text, now_text("YYYY-MM-DD HH24:MI:SS.MS"))),
            "current_date" | "date('now')" => Some((PgType::Text, now_text("YYYY-MM-DD"))),
            "current_time" | "time('now')" => Some((PgType::Text, now_text("HH24:MI:SS"))),
            "strftime('%s','now')" | "unixepoch()" | "unixepoch('now')" => {
                Some((PgType::Bigint, "(extract(epoch FROM now()))::bigint".to_string()))
            }
            "unixepoch('subsec')" | "unixepoch('now','subsec')" => {
                Some((PgType::Double, "(extract(epoch FROM now()))::double precision".to_string()))
            }
            _ => None,
        };
        if let Some((_, sql)) = time.as_ref().filter(|_| ty == PgType::Any) {
            // A column without a type stores the time as SQLite computes it: text, or an
            // integer for epoch seconds.
            return Some(format!("pg_catalog.to_jsonb({sql})"));
        }
        if let Some((want, sql)) = time {
            // A text time in an integer column (or the reverse) is what SQLite stores,
            // but PostgreSQL's column cannot hold it.
            return if want == ty || (want != PgType::Text && ty == PgType::Numeric) {
                Some(sql)
            } else {
                refuse(self, &format!("this time default does not fit a {} column", ty.sql()))
            };
        }
        match (ty, toks) {
            (_, [Tok::Word(w)]) if w.eq_ignore_ascii_case("NULL") => Some("NULL".into()),
            // A column without a type stores a constant as SQLite would: an integer or a
            // real as a number, a string as text (`cloudsync_any`'s JSON forms).
            (PgType::Any, [Tok::Num(n)]) => any_number("", n).or_else(|| refuse(self, "a number SQLite cannot store")),
            (PgType::Any, [Tok::Punct(sign), Tok::Num(n)]) if sign == "-" || sign == "+" => {
                any_number(if sign == "-" { "-" } else { "" }, n)
                    .or_else(|| refuse(self, "a number SQLite cannot store"))
            }
            (PgType::Any, [Tok::Str(s) | Tok::Quoted(s)]) => Some(literal(&json_string(s))),
            (PgType::Boolean, [Tok::Num(n)]) if n == "0" || n == "1" => {
                Some((if n == "1" { "true" } else { "false" }).into())
            }
            (PgType::Boolean, [Tok::Word(w)]) if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") => {
                Some(w.to_ascii_lowercase())
            }
            (PgType::Bigint | PgType::Numeric | PgType::Double, [Tok::Word(w)])
                if w.eq_ignore_ascii_case("TRUE") || w.eq_ignore_ascii_case("FALSE") =>
            {
                Some((if w.eq_ignore_ascii_case("TRUE") { "1" } else { "0" }).into())
            }
            (PgType::Bigint | PgType::Numeric | PgType::Double, [Tok::Num(n)]) if number_fits(ty, n) => Some(n.clone()),
            (PgType::Bigint | PgType::Numeric | PgType::Double, [Tok::Punct(sign), Tok::Num(n)])
                if (sign == "-" || sign == "+") && number_fits(ty, n) =>
            {
                Some(format!("{sign}{n}"))
            }
            // A number default on a text column is stored by SQLite as its text.
            (PgType::Text, [Tok::Num(n)]) => Some(literal(n)),
            (PgType::Text, [Tok::Punct(sign), Tok::Num(n)]) if sign == "-" || sign == "+" => {
                Some(literal(&format!("{}{n}", if sign == "-" { "-" } else { "" })))
            }
            // SQLite reads a double-quoted word in DEFAULT as a string.
            (PgType::Text, [Tok::Str(s) | Tok::Quoted(s)]) => Some(literal(s)),
            (PgType::Numeric | PgType::Bigint | PgType::Double, [Tok::Str(s) | Tok::Quoted(s)])
                if number_fits(ty, s) =>
            {
                Some(s.clone())
            }
            (PgType::Bytea, [Tok::Blob(hex)]) => Some(format!("'\\x{hex}'::bytea")),
            (PgType::Bytea, [Tok::Str(s)]) => Some(format!("convert_to({}, 'UTF8')", literal(s))),
            _ => refuse(
                self,
                &format!("only constants and the current time translate; this one does not fit a {} column", ty.sql()),
            ),
        }
    }

    /// An expression (`CHECK`, index term, partial-index predicate, generated column).
    pub(super) fn expr(&mut self, scope: &Scope<'_>, toks: &[Tok]) -> Option<String> {
        let t = scope.table;
        let mut out: Vec<String> = Vec::new();
        let mut i = 0;
        let before = self.refusals.len();
        let fail = |me: &mut Self, construct: String, reason: Reason, detail: &str| {
            me.refuse(reason, &t.name, scope.column, &construct, detail);
        };
        // The boolean column compared on the left, for `b = 1`, `b IN (0, 1)`.
        let mut bool_context = false;
        while i < toks.len() {
            let tok = &toks[i];
            let next = toks.get(i + 1);
            let call = next.is_some_and(|n| n.is_punct("(")) && !is_keyword(tok);
            match tok {
                // `json_extract(x, '$.a.b')`: the same member as text (SQLite answers a
                // string member as text, a number as a number: they compare alike with
                // the text column it is checked against or indexed with).
                Tok::Word(w) if call && w.eq_ignore_ascii_case("json_extract") => {
                    let Some((args, end)) = call_args(toks, i + 1) else {
                        fail(self, format!("{w}()"), Reason::Function, "an unbalanced call");
                        break;
                    };
                    match args.as_slice() {
                        [doc, [Tok::Str(path)]] => match json_path(path) {
                            Some(keys) => {
                                // A blob column holds the JSON as bytes (SQLite reads its text).
                                let blob = match doc {
                                    [Tok::Word(c) | Tok::Quoted(c)] => self.column_type(t, c) == Some(PgType::Bytea),
                                    _ => false,
                                };
                                let doc = self.expr(scope, doc)?;
                                let doc = if blob {
                                    self.needs_utf8 = true;
                                    format!("{}({doc})", self.qualified_utf8())
                                } else {
                                    doc
                                };
                                let keys: String = keys.iter().map(|k| format!(", {}", literal(k))).collect();
                                out.push(format!("pg_catalog.jsonb_extract_path_text(({doc})::jsonb{keys})"));
                            }
                            None => fail(
                                self,
                                format!("{w}(…, '{path}')"),
                                Reason::Function,
                                "only paths of object members and array indexes ($.a.b[0]) translate",
                            ),
                        },
                        _ => fail(
                            self,
                            format!("{w}()"),
                            Reason::Function,
                            "json_extract translates with one literal path only",
                        ),
                    }
                    i = end + 1;
                    continue;
                }
                Tok::Word(w) if call => {
                    let f = w.to_ascii_lowercase();
                    let mapped = match f.as_str() {
                        "lower" | "upper" | "length" | "abs" | "coalesce" | "nullif" | "trim" | "ltrim" | "rtrim"
                        | "replace" | "substr" | "round" => f.clone(),
                        "ifnull" => "coalesce".into(),
                        "substring" => "substr".into(),
                        _ => {
                            fail(
                                self,
                                format!("{w}()"),
                                Reason::Function,
                                "no PostgreSQL function behaves the same; remove it or rewrite the expression",
                            );
                            String::new()
                        }
                    };
                    out.push(mapped);
                }
                Tok::Word(w) => {
                    let up = w.to_ascii_uppercase();
                    match up.as_str() {
                        // SQLite's postfix `x NOT NULL` (as `x NOTNULL`): after an operand.
                        "NOT"
                            if next.is_some_and(|n| n.is("NULL"))
                                && out.last().is_some_and(|o| {
                                    !matches!(
                                        o.to_ascii_uppercase().as_str(),
                                        "AND" | "OR" | "NOT" | "(" | "," | "WHEN" | "THEN" | "ELSE" | "CASE"
                                    ) && !matches!(o.as_str(), "=" | "<>" | "!=" | "<" | "<=" | ">" | ">=")
                                }) =>
                        {
                            out.push("IS NOT NULL".into());
                            bool_context = false;
                            i += 2;
                            continue;
                        }
                        "AND" | "OR" | "NOT" | "IN" | "NULL" | "BETWEEN" | "CASE" | "WHEN" | "THEN" | "ELSE"
                        | "END" | "ISNULL" | "NOTNULL" | "ESCAPE" | "TRUE" | "FALSE" => {
                            out.push(match up.as_str() {
                                "ISNULL" => "IS NULL".into(),
                                "NOTNULL" => "IS NOT NULL".into(),
                                _ => up.clone(),
                            });
                            if up != "IN" && up != "NOT" {
                                bool_context = false;
                            }
                        }
                        "IS" => {
                            // `a IS b` compares any two values in SQLite; in PostgreSQL
                            // only NULL/TRUE/FALSE may follow IS.
                            let not = toks.get(i + 1).is_some_and(|n| n.is("NOT"));
                            let after = toks.get(i + 1 + usize::from(not));
                            if after.is_some_and(|a| a.is("NULL") || a.is("TRUE") || a.is("FALSE")) {
                                out.push(if not { "IS NOT".into() } else { "IS".into() });
                            } else {
                                out.push(if not { "IS DISTINCT FROM".into() } else { "IS NOT DISTINCT FROM".into() });
                            }
                            i += usize::from(not);
                        }
                        "LIKE" => {
                            // SQLite's LIKE ignores (ASCII) case.
                            out.push("ILIKE".into());
                        }
                        // `CAST(blob AS TEXT)` reads the bytes as UTF-8 text in SQLite;
                        // PostgreSQL's bytea → text cast would give their hex escape.
                        "CAST" if self.blob_as_text(t, &toks[i..]) => {
                            let col = match &toks[i + 2] {
                                Tok::Word(c) | Tok::Quoted(c) => canonical_column(t, c),
                                _ => String::new(),
                            };
                            self.needs_utf8 = true;
                            out.push(format!("{}({})", self.qualified_utf8(), ident(&col)));
                            i += 6;
                            continue;
                        }
                        "CAST" => {
                            out.push("CAST".into());
                        }
                        // `x GLOB 'pattern'`: the same match as an anchored regular
                        // expression (case-sensitive in both).
                        "GLOB" => match next {
                            Some(Tok::Str(pattern)) => {
                                let negated = out.last().is_some_and(|o| o == "NOT");
                                if negated {
                                    out.pop();
                                }
                                out.push((if negated { "!~" } else { "~" }).into());
                                out.push(literal(&glob_regex(pattern)));
                                i += 2;
                                continue;
                            }
                            _ => {
                                fail(self, up.clone(), Reason::Operator, "GLOB translates with a literal pattern only")
                            }
                        },
                        "AS" => {
                            // Inside CAST(x AS type): map the type.
                            out.push("AS".into());
                            let mut j = i + 1;
                            let mut decl = Vec::new();
                            while let Some(Tok::Word(w)) = toks.get(j) {
                                decl.push(w.clone());
                                j += 1;
                            }
                            match pg_type(&decl.join(" ")) {
                                Some(ty) => out.push(ty.sql().into()),
                                None => {
                                    fail(self, "CAST without a type".into(), Reason::Operator, "a CAST needs a type")
                                }
                            }
                            i = j;
                            continue;
                        }
                        "CURRENT_TIMESTAMP" | "CURRENT_DATE" | "CURRENT_TIME" => {
                            fail(
                                self,
                                up.clone(),
                                Reason::Function,
                                "the current time is only translated as a DEFAULT",
                            );
                        }
                        "REGEXP" | "MATCH" | "COLLATE" => {
                            fail(self, up.clone(), Reason::Operator, "no PostgreSQL operator behaves the same");
                        }
                        _ => {
                            let name = canonical_column(t, w);
                            bool_context = self.column_type(t, &name) == Some(PgType::Boolean);
                            self.untyped_in_expr(scope, &name);
                            out.push(ident(&name));
                        }
                    }
                }
                Tok::Quoted(q) => {
                    if t.columns.iter().any(|c| c.name.eq_ignore_ascii_case(q)) {
                        let name = canonical_column(t, q);
                        bool_context = self.column_type(t, &name) == Some(PgType::Boolean);
                        self.untyped_in_expr(scope, &name);
                        out.push(ident(&name));
                    } else {
                        // SQLite falls back to a string for an unknown "word".
                        out.push(literal(q));
                    }
                }
                Tok::Str(s) => out.push(literal(s)),
                Tok::Blob(h) => out.push(format!("'\\x{h}'::bytea")),
                Tok::Num(n) => {
                    if bool_context && (n == "0" || n == "1") {
                        out.push(if n == "1" { "true".into() } else { "false".into() });
                    } else {
                        out.push(n.clone());
                    }
                }
                Tok::Punct(p) => {
                    let mapped = match p.as_str() {
                        "==" => "=",
                        "(" | ")" | "," | "=" | "<>" | "!=" | "<" | "<=" | ">" | ">=" | "+" | "-" | "*" | "/" | "%"
                        | "||" => p.as_str(),
                        _ => {
                            fail(self, p.clone(), Reason::Operator, "no PostgreSQL operator behaves the same");
                            ""
                        }
                    };
                    if matches!(p.as_str(), "+" | "-" | "*" | "/" | "%" | "||") {
                        bool_context = false;
                    }
                    out.push(mapped.to_string());
                }
            }
            i += 1;
        }
        if self.refusals.len() > before {
            return None;
        }
        Some(join_tokens(&out))
    }
}

impl Translator {
    /// Whether `toks` starts with `CAST ( <blob column> AS <text type> )`.
    fn blob_as_text(&self, t: &Table, toks: &[Tok]) -> bool {
        let [_, open, Tok::Word(c) | Tok::Quoted(c), Tok::Word(as_), Tok::Word(ty), close, ..] = toks else {
            return false;
        };
        open.is_punct("(")
            && close.is_punct(")")
            && as_.eq_ignore_ascii_case("AS")
            && pg_type(ty) == Some(PgType::Text)
            && self.column_type(t, c) == Some(PgType::Bytea)
    }

    /// A column without a type, in an expression: PostgreSQL holds it as JSON, which
    /// compares and computes otherwise than SQLite's values.
    fn untyped_in_expr(&mut self, scope: &Scope<'_>, name: &str) {
        let t = scope.table;
        if t.columns.iter().any(|c| c.name.eq_ignore_ascii_case(name)) && self.column_type(t, name) == Some(PgType::Any)
        {
            self.refuse(
                Reason::TypelessColumn,
                &t.name,
                Some(name),
                name,
                "a column without a type is stored as JSON in PostgreSQL and cannot be used in an expression there; \
                 declare its type",
            );
        }
    }
}

/// The arguments of the call whose `(` is at `open`, split at top-level commas, and
/// the index of its `)`.
fn call_args(toks: &[Tok], open: usize) -> Option<(Vec<&[Tok]>, usize)> {
    let mut depth = 0usize;
    let mut start = open + 1;
    let mut args = Vec::new();
    for (j, t) in toks.iter().enumerate().skip(open) {
        if t.is_punct("(") {
            depth += 1;
        } else if t.is_punct(")") {
            depth -= 1;
            if depth == 0 {
                args.push(&toks[start..j]);
                return Some((args, j));
            }
        } else if t.is_punct(",") && depth == 1 {
            args.push(&toks[start..j]);
            start = j + 1;
        }
    }
    None
}

/// The keys of a JSON path of members and indexes (`$.a.b[0]`, `$."x y"`), or None.
fn json_path(path: &str) -> Option<Vec<String>> {
    let mut rest = path.strip_prefix('$')?;
    let mut keys = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let (key, after) = if let Some(q) = r.strip_prefix('"') {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            } else {
                let end = r.find(['.', '[']).unwrap_or(r.len());
                (&r[..end], &r[end..])
            };
            if key.is_empty() {
                return None;
            }
            keys.push(key.to_string());
            rest = after;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            let n = &r[..end];
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            keys.push(n.to_string());
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(keys)
}

/// A GLOB pattern as an anchored PostgreSQL regular expression: `*` any run, `?` one
/// character, `[...]` a class (`^` negates it in SQLite's GLOB), everything else itself.
fn glob_regex(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => out.push_str(".*"),
            '?' => out.push('.'),
            '[' => {
                // A class: `]` right after `[` or `[^` is a member; unclosed, `[` is itself.
                let mut j = i + 1;
                let negated = chars.get(j) == Some(&'^');
                if negated {
                    j += 1;
                }
                let first = j;
                while j < chars.len() && (chars[j] != ']' || j == first) {
                    j += 1;
                }
                if j >= chars.len() {
                    out.push_str("\\[");
                } else {
                    out.push('[');
                    if negated {
                        out.push('^');
                    }
                    for &c in &chars[first..j] {
                        if matches!(c, '\\' | '[' | '^') {
                            out.push('\\');
                        }
                        out.push(c);
                    }
                    out.push(']');
                    i = j;
                }
            }
            c => {
                if "\\.+()|{}^$".contains(c) || c == ']' {
                    out.push('\\');
                }
                out.push(c);
            }
        }
        i += 1;
    }
    out.push('$');
    out
}

/// A numeric constant in `cloudsync_any`'s form: an integer without a fraction, a
/// real with one. None when SQLite would not store it as a number.
fn any_number(sign: &str, n: &str) -> Option<String> {
    if let Ok(i) = format!("{sign}{n}").parse::<i64>() {
        return Some(literal(&i.to_string()));
    }
    let r = format!("{sign}{n}").parse::<f64>().ok().filter(|r| r.is_finite())?;
    let mut text = format!("{r}");
    if !text.contains('.') {
        text.push_str(".0");
    }
    Some(literal(&text))
}

/// `s` as a JSON string.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn number_fits(ty: PgType, n: &str) -> bool {
    match ty {
        PgType::Bigint => {
            n.parse::<i64>().is_ok() || n.parse::<f64>().is_ok_and(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
        }
        _ => n.parse::<f64>().is_ok_and(f64::is_finite),
    }
}

fn shown(t: &Tok) -> String {
    match t {
        Tok::Word(w) | Tok::Num(w) | Tok::Punct(w) => w.clone(),
        Tok::Quoted(q) => ident(q),
        Tok::Str(s) => literal(s),
        Tok::Blob(h) => format!("X'{h}'"),
    }
}

fn join_tokens(toks: &[String]) -> String {
    let mut s = String::new();
    for (i, t) in toks.iter().enumerate() {
        if t.is_empty() {
            continue;
        }
        let prev = if i > 0 { toks[i - 1].as_str() } else { "" };
        let tight = s.is_empty() || t == ")" || t == "," || prev == "(" || (t == "(" && is_function_name(prev));
        if !tight {
            s.push(' ');
        }
        s.push_str(t);
    }
    s
}

/// Words the expression translator handles itself (never function names).
fn is_keyword(t: &Tok) -> bool {
    const KEYWORDS: [&str; 25] = [
        "AND", "OR", "NOT", "IN", "IS", "NULL", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "END", "CAST", "AS", "LIKE",
        "GLOB", "REGEXP", "MATCH", "ESCAPE", "EXISTS", "ISNULL", "NOTNULL", "TRUE", "FALSE", "COLLATE",
    ];
    matches!(t, Tok::Word(w) if KEYWORDS.iter().any(|k| w.eq_ignore_ascii_case(k)))
}

fn is_function_name(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_lowercase() || c == '_') && s != "in"
}
