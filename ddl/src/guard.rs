//! What SQL a tenant may hand the service, and the SQLite DDL the service runs in its
//! place: statements **re-emitted from the syntax tree**, never the submitted text.
//!
//! Tenant SQL is data. [`schema`] parses it with the project's own parser (only
//! `CREATE TABLE` and `CREATE INDEX` parse at all: views, triggers, `ATTACH`, `PRAGMA`,
//! `VACUUM`, `CREATE … AS SELECT` are syntax errors naming the line), checks every
//! expression in it ([`check_expression`]: built-in deterministic functions from an
//! allow-list, no subquery, no parameter, no qualified name), refuses reserved names,
//! and emits each statement again token by token with every identifier and literal
//! quoted canonically ([`emit`]). Whatever the submitted text hides in comments or odd
//! quoting, what runs is a statement built here from parsed parts. Row policies are
//! expressions under the same rules ([`expression`]).
//!
//! The same checks run before a translation to PostgreSQL (`translate`), so both
//! backends accept the same SQL.
//!
//! One file, over 500 lines: one concern — what tenant SQL may contain (the allow-
//! lists) and the canonical re-emission — with its unit tests.

use super::lex::{ident, lex, Tok};
use super::refusal::{Reason, Refusal, TranslateError};
use super::{Column, ColumnConstraint, ForeignKey, Index, IndexedTerm, Named, Statement, Table, TableConstraint};

/// Functions an expression in tenant DDL or a row policy may call: SQLite's built-in
/// scalar functions that read nothing but their arguments (no file, no network, no
/// other table, no unbounded allocation such as `zeroblob` or `printf` widths), the
/// date and time functions (SQLite itself refuses their non-deterministic forms where
/// determinism is required) and the JSON ones. Anything else — `load_extension`,
/// `readfile`, `cloudsync_*`, `random` — is refused.
pub const FUNCTIONS: &[&str] = &[
    "abs",
    "char",
    "coalesce",
    "concat",
    "concat_ws",
    "glob",
    "hex",
    "ifnull",
    "iif",
    "instr",
    "length",
    "like",
    "likelihood",
    "likely",
    "lower",
    "ltrim",
    "max",
    "min",
    "nullif",
    "octet_length",
    "quote",
    "replace",
    "round",
    "rtrim",
    "sign",
    "substr",
    "substring",
    "trim",
    "typeof",
    "unhex",
    "unicode",
    "unlikely",
    "upper",
    "date",
    "time",
    "datetime",
    "julianday",
    "strftime",
    "unixepoch",
    "timediff",
    "current_timestamp",
    "current_date",
    "current_time",
    "json",
    "json_array",
    "json_array_length",
    "json_extract",
    "json_insert",
    "json_object",
    "json_patch",
    "json_quote",
    "json_remove",
    "json_replace",
    "json_set",
    "json_type",
    "json_valid",
    "acos",
    "asin",
    "atan",
    "atan2",
    "ceil",
    "ceiling",
    "cos",
    "degrees",
    "exp",
    "floor",
    "ln",
    "log",
    "log10",
    "log2",
    "mod",
    "pi",
    "pow",
    "power",
    "radians",
    "sin",
    "sqrt",
    "tan",
    "trunc",
];

/// The functions a row policy may call besides [`FUNCTIONS`]: the acting device's
/// identity (registered by the service on its connections).
pub const POLICY_FUNCTIONS: &[&str] = &["auth_uid", "auth_role", "auth_claim"];

/// Keywords that may stand before `(` without being a function call.
const OPERATORS: &[&str] = &[
    "AND", "OR", "NOT", "IN", "IS", "LIKE", "GLOB", "BETWEEN", "CASE", "WHEN", "THEN", "ELSE", "CAST", "ESCAPE",
    "DISTINCT", "FROM",
];

/// Words that bring in another statement, another table or a user function.
const FORBIDDEN: &[&str] = &["SELECT", "VALUES", "WITH", "EXISTS", "RAISE", "REGEXP", "MATCH"];

/// Collations built into SQLite.
const COLLATIONS: &[&str] = &["BINARY", "NOCASE", "RTRIM"];

/// Conflict resolutions of `ON CONFLICT`.
const RESOLUTIONS: &[&str] = &["ROLLBACK", "ABORT", "FAIL", "IGNORE", "REPLACE"];

/// Foreign-key actions.
const ACTIONS: &[&str] = &["SET NULL", "SET DEFAULT", "CASCADE", "RESTRICT", "NO ACTION"];

/// Why an expression is not allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unsafe {
    /// The refusal's code.
    pub reason: Reason,
    /// The construct.
    pub construct: String,
    /// Why, and what is allowed instead.
    pub detail: String,
}

/// Checks an expression's tokens (a `CHECK`, a `DEFAULT`, a generated column, an index
/// term or predicate, a row policy): only the functions of `functions`, no subquery,
/// no other statement, no qualified name, balanced parentheses.
pub fn check_expression(toks: &[Tok], functions: &[&[&str]]) -> Result<(), Unsafe> {
    let mut depth = 0usize;
    for (i, tok) in toks.iter().enumerate() {
        let call = toks.get(i + 1).is_some_and(|t| t.is_punct("("));
        match tok {
            Tok::Word(w) if FORBIDDEN.iter().any(|f| w.eq_ignore_ascii_case(f)) => {
                return Err(Unsafe {
                    reason: Reason::Subquery,
                    construct: w.to_ascii_uppercase(),
                    detail: "an expression here may not read other tables, run a statement or call a user function"
                        .into(),
                })
            }
            Tok::Word(w) if call && !OPERATORS.iter().any(|o| w.eq_ignore_ascii_case(o)) => {
                let lower = w.to_ascii_lowercase();
                if !functions.iter().any(|set| set.contains(&lower.as_str())) {
                    return Err(Unsafe {
                        reason: Reason::Function,
                        construct: format!("{w}()"),
                        detail: "only SQLite's built-in scalar functions that read nothing but their arguments \
                                 are allowed (docs/security.md)"
                            .into(),
                    });
                }
            }
            Tok::Quoted(q) if call => {
                return Err(Unsafe {
                    reason: Reason::Function,
                    construct: format!("\"{q}\"()"),
                    detail: "a function is named by a bare word".into(),
                })
            }
            Tok::Punct(p) if p == "(" => depth += 1,
            Tok::Punct(p) if p == ")" => {
                depth = depth.checked_sub(1).ok_or_else(|| unbalanced(toks))?;
            }
            Tok::Punct(p) if p == "." || p == ";" => {
                return Err(Unsafe {
                    reason: Reason::Operator,
                    construct: p.clone(),
                    detail: "qualified names and statement separators are not allowed in an expression".into(),
                })
            }
            _ => {}
        }
    }
    if depth == 0 {
        Ok(())
    } else {
        Err(unbalanced(toks))
    }
}

fn unbalanced(toks: &[Tok]) -> Unsafe {
    Unsafe { reason: Reason::Operator, construct: shown_tokens(toks), detail: "unbalanced parentheses".into() }
}

/// A row policy's SQL, checked ([`check_expression`] with [`POLICY_FUNCTIONS`]) and
/// re-emitted from its tokens.
pub fn expression(sql: &str) -> Result<String, String> {
    let toks: Vec<Tok> = lex(sql).map_err(|e| e.to_string())?.into_iter().map(|s| s.tok).collect();
    if toks.is_empty() {
        return Err("the expression is empty".into());
    }
    check_expression(&toks, &[FUNCTIONS, POLICY_FUNCTIONS])
        .map_err(|u| format!("[{}] {}: {}", u.reason.code(), u.construct, u.detail))?;
    Ok(emit_tokens(&toks))
}

/// A statement ready to run: what was parsed, and the SQL emitted from it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Emitted {
    /// The parsed statement.
    pub statement: Statement,
    /// SQLite DDL emitted from it (one statement, no separator).
    pub sql: String,
    /// The existing table this statement alters (`ALTER TABLE … ADD COLUMN`), if it
    /// does: a synced table's alter is wrapped in `cloudsync_begin_alter`/`commit_alter`.
    pub alters: Option<String>,
}

/// Parses tenant schema SQL, checks it, and emits each statement again (see the module
/// documentation). Every refused construct is listed, not just the first.
pub fn schema(sql: &str) -> Result<Vec<Emitted>, TranslateError> {
    let statements = super::parse(sql)?;
    if statements.is_empty() {
        return Err(TranslateError::Empty);
    }
    let refusals = check(&statements);
    if !refusals.is_empty() {
        return Err(TranslateError::Refused(refusals));
    }
    Ok(statements.into_iter().map(|s| Emitted { sql: emit(&s), statement: s, alters: None }).collect())
}

/// [`schema`], for a database that already has `existing` tables (name → columns):
/// a table declared again gets `ALTER TABLE … ADD COLUMN` for each new column and
/// nothing else, so a schema can be posted again, wider, as the application evolves;
/// an index declared again is created `IF NOT EXISTS`. What cannot be added without
/// breaking devices is refused with what to do instead: a column left out (removing
/// one), an added column joining the key or `UNIQUE`, an added `NOT NULL` column
/// without a `DEFAULT`.
pub fn schema_against(sql: &str, existing: &crate::Existing) -> Result<Vec<Emitted>, TranslateError> {
    let statements = super::parse(sql)?;
    if statements.is_empty() {
        return Err(TranslateError::Empty);
    }
    let mut found = Found(check(&statements));
    let mut out = Vec::new();
    // A temporary table lives in one connection: nothing of it, nor of its indexes, is
    // part of a schema to create centrally (the translator leaves them out too).
    let temp: Vec<String> = statements
        .iter()
        .filter_map(|s| match s {
            Statement::Table(t) if t.temp => Some(t.name.clone()),
            _ => None,
        })
        .collect();
    let is_temp = |name: &str| temp.iter().any(|t| t.eq_ignore_ascii_case(name));
    let only_temp = statements.iter().all(|s| match s {
        Statement::Table(t) => t.temp,
        Statement::Index(i) => is_temp(&i.table),
        Statement::AddColumn { .. } => false,
    });
    if only_temp && found.0.is_empty() {
        return Err(TranslateError::Empty);
    }
    for s in statements {
        let existing_table = |name: &str| existing.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
        match &s {
            Statement::Table(t) if t.temp => {}
            Statement::Index(i) if is_temp(&i.table) => {}
            Statement::Table(t) => match existing_table(&t.name) {
                None => out.push(Emitted { sql: emit(&s), statement: s, alters: None }),
                Some((name, have)) => extend(t, name, have, &s, &mut found, &mut out),
            },
            // As the same table declared again with one more column: the same rule; a
            // column it has already is nothing to do (a migration run twice).
            Statement::AddColumn { table, column } => match existing_table(table) {
                None => out.push(Emitted { sql: emit(&s), statement: s.clone(), alters: Some(table.clone()) }),
                Some((name, have)) => extend(&with_column(name, have, column), name, have, &s, &mut found, &mut out),
            },
            Statement::Index(i) => {
                let again = existing_table(&i.table).is_some();
                let i = Index { if_not_exists: i.if_not_exists || again, ..i.clone() };
                out.push(Emitted { sql: emit_index(&i), statement: Statement::Index(i), alters: None });
            }
        }
    }
    if !found.0.is_empty() {
        return Err(TranslateError::Refused(found.0));
    }
    Ok(out)
}

/// `ALTER TABLE … ADD COLUMN` for each column `t` adds to the existing table `name`
/// (columns `have`), as `s` asks; refusals into `found`.
fn extend(t: &Table, name: &str, have: &[String], s: &Statement, found: &mut Found, out: &mut Vec<Emitted>) {
    let (added, refused) = added_columns(t, name, have);
    found.0.extend(refused);
    for c in added {
        out.push(Emitted {
            sql: format!("ALTER TABLE {} ADD COLUMN {}", ident(name), emit_column(c)),
            statement: s.clone(),
            alters: Some(name.to_string()),
        });
    }
}

/// The existing table `name` (columns `have`, their definitions unknown) declared again
/// with `column` as well: what `ALTER TABLE … ADD COLUMN` asks, as a table.
pub(crate) fn with_column(name: &str, have: &[String], column: &Column) -> Table {
    let mut columns: Vec<Column> = have
        .iter()
        .map(|c| Column { name: c.clone(), decl_type: String::new(), constraints: Vec::new() })
        .filter(|c| !c.name.eq_ignore_ascii_case(&column.name))
        .collect();
    columns.push(column.clone());
    Table { name: name.to_string(), columns, ..Table::default() }
}

/// The columns of `t` that the existing table `name` (with columns `have`) lacks, and
/// the refusals of what an alter cannot add without breaking devices: the one rule of
/// both backends (the translator's `ADD COLUMN`s too).
pub(crate) fn added_columns<'t>(t: &'t Table, name: &str, have: &[String]) -> (Vec<&'t Column>, Vec<Refusal>) {
    let mut found = Found(Vec::new());
    for old in have {
        if !t.columns.iter().any(|c| c.name.eq_ignore_ascii_case(old)) {
            found.add(
                Reason::SchemaChange,
                name,
                Some(old),
                "column removed".into(),
                "only new columns and new tables can be added to a synced schema: declare every existing column \
                 (a column no longer used can stay, NULL in new rows)"
                    .into(),
            );
        }
    }
    let mut added = Vec::new();
    for c in t.columns.iter().filter(|c| !have.iter().any(|h| h.eq_ignore_ascii_case(&c.name))) {
        let has = |f: fn(&ColumnConstraint) -> bool| c.constraints.iter().any(|k| f(&k.item));
        if has(|k| matches!(k, ColumnConstraint::PrimaryKey { .. } | ColumnConstraint::Unique { .. })) {
            found.add(
                Reason::SchemaChange,
                name,
                Some(&c.name),
                "new key or UNIQUE column".into(),
                "an added column cannot join the primary key or carry UNIQUE: rows on devices would collide".into(),
            );
        } else if has(|k| matches!(k, ColumnConstraint::NotNull { .. }))
            && !has(|k| matches!(k, ColumnConstraint::Default(_)))
        {
            found.add(
                Reason::SchemaChange,
                name,
                Some(&c.name),
                "new NOT NULL column without DEFAULT".into(),
                "existing rows (and devices on the older schema) have no value for it: give it a DEFAULT".into(),
            );
        } else {
            added.push(c);
        }
    }
    (added, found.0)
}

/// Refusals, collected.
struct Found(Vec<Refusal>);

impl Found {
    fn add(&mut self, reason: Reason, table: &str, column: Option<&str>, construct: String, detail: String) {
        self.0.push(Refusal {
            reason,
            table: table.to_string(),
            column: column.map(str::to_string),
            construct,
            detail,
            omit: None,
        });
    }

    fn expr(&mut self, table: &str, column: Option<&str>, toks: &[Tok]) {
        if let Err(u) = check_expression(toks, &[FUNCTIONS]) {
            self.add(u.reason, table, column, u.construct, u.detail);
        }
    }
}

/// Everything in `statements` a tenant may not run.
pub fn check(statements: &[Statement]) -> Vec<Refusal> {
    let mut found = Found(Vec::new());
    for s in statements {
        match s {
            Statement::Table(t) => {
                if let Some(why) = reserved(&t.name) {
                    found.add(Reason::ReservedName, &t.name, None, format!("table \"{}\"", t.name), why.into());
                }
                for c in &t.columns {
                    check_column(&mut found, &t.name, c);
                }
                for k in &t.constraints {
                    match &k.item {
                        TableConstraint::Check(e) => found.expr(&t.name, None, e),
                        TableConstraint::PrimaryKey { columns, .. } | TableConstraint::Unique { columns, .. } => {
                            for term in columns {
                                found.expr(&t.name, None, &term.expr);
                            }
                        }
                        TableConstraint::ForeignKey { .. } => {}
                    }
                }
            }
            Statement::AddColumn { table, column } => check_column(&mut found, table, column),
            Statement::Index(i) => {
                if let Some(why) = reserved(&i.name) {
                    found.add(Reason::ReservedName, &i.table, None, format!("index \"{}\"", i.name), why.into());
                }
                for term in &i.terms {
                    found.expr(&i.table, None, &term.expr);
                }
                if let Some(p) = &i.predicate {
                    found.expr(&i.table, None, p);
                }
            }
        }
    }
    found.0
}

/// A column definition's refusals: its declared type, expressions and collation.
fn check_column(found: &mut Found, table: &str, c: &Column) {
    if !type_is_plain(&c.decl_type) {
        found.add(
            Reason::DeclaredType,
            table,
            Some(&c.name),
            c.decl_type.clone(),
            "a declared type is words and at most two numbers in parentheses".into(),
        );
    }
    for k in &c.constraints {
        match &k.item {
            ColumnConstraint::Check(e) | ColumnConstraint::Default(e) | ColumnConstraint::Generated { expr: e, .. } => {
                found.expr(table, Some(&c.name), e);
            }
            ColumnConstraint::Collate(name) if !COLLATIONS.iter().any(|k| name.eq_ignore_ascii_case(k)) => {
                found.add(
                    Reason::Collation,
                    table,
                    Some(&c.name),
                    format!("COLLATE {name}"),
                    "only BINARY, NOCASE and RTRIM exist here".into(),
                );
            }
            _ => {}
        }
    }
}

/// Why a name is reserved, if it is: SQLite's own and the engine's metadata.
fn reserved(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    if lower.starts_with("sqlite_") {
        Some("names starting with sqlite_ are SQLite's")
    } else if lower.starts_with("cloudsync") || lower.ends_with("_cloudsync") || lower.ends_with("_cloudsync_log") {
        Some("names starting with cloudsync or ending in _cloudsync or _cloudsync_log are the sync engine's")
    } else {
        None
    }
}

/// A declared type as SQLite's grammar has it: words, then optionally one or two signed
/// numbers in parentheses.
fn type_is_plain(t: &str) -> bool {
    let (words, args) = match t.split_once('(') {
        Some((w, rest)) => (w, Some(rest)),
        None => (t, None),
    };
    let words_ok = words.split_whitespace().all(|w| w.chars().all(|c| c.is_alphanumeric() || c == '_'));
    let args_ok = args.is_none_or(|a| {
        a.strip_suffix(')').is_some_and(|inner| {
            let parts: Vec<&str> = inner.split(',').map(str::trim).collect();
            parts.len() <= 2
                && parts.iter().all(|p| {
                    let p = p.trim_start_matches(['+', '-']).trim();
                    !p.is_empty() && p.chars().all(|c| c.is_ascii_digit() || c == '.')
                })
        })
    });
    words_ok && args_ok
}

/// A token as SQL, quoted canonically.
fn emit_token(t: &Tok) -> String {
    match t {
        Tok::Word(w) => w.clone(),
        Tok::Quoted(q) => ident(q),
        Tok::Str(s) => format!("'{}'", s.replace('\'', "''")),
        Tok::Blob(h) => format!("X'{h}'"),
        Tok::Num(n) | Tok::Punct(n) => n.clone(),
    }
}

fn emit_tokens(toks: &[Tok]) -> String {
    toks.iter().map(emit_token).collect::<Vec<_>>().join(" ")
}

fn shown_tokens(toks: &[Tok]) -> String {
    let s = emit_tokens(toks);
    if s.chars().count() > 80 {
        format!("{}…", s.chars().take(80).collect::<String>())
    } else {
        s
    }
}

/// SQLite DDL for a parsed statement, every name quoted and every expression emitted
/// from its tokens (the caller has [`check`]ed it).
pub fn emit(s: &Statement) -> String {
    match s {
        Statement::Table(t) => emit_table(t),
        Statement::Index(i) => emit_index(i),
        Statement::AddColumn { table, column } => {
            format!("ALTER TABLE {} ADD COLUMN {}", ident(table), emit_column(column))
        }
    }
}

fn constraint_name<T>(n: &Named<T>) -> String {
    n.name.as_ref().map(|name| format!("CONSTRAINT {} ", ident(name))).unwrap_or_default()
}

fn on_conflict(r: &Option<String>) -> String {
    r.as_ref()
        .and_then(|r| RESOLUTIONS.iter().find(|k| r.eq_ignore_ascii_case(k)))
        .map(|k| format!(" ON CONFLICT {k}"))
        .unwrap_or_default()
}

fn terms(ts: &[IndexedTerm]) -> String {
    ts.iter()
        .map(|t| {
            let mut s = match &t.name {
                Some(n) => ident(n),
                // The term's tokens as parsed (an expression in parentheses keeps them).
                None => emit_tokens(&t.expr),
            };
            if let Some(c) = t.collate.as_ref().and_then(|c| COLLATIONS.iter().find(|k| c.eq_ignore_ascii_case(k))) {
                s.push_str(&format!(" COLLATE {c}"));
            }
            if t.desc {
                s.push_str(" DESC");
            }
            s
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn references(f: &ForeignKey) -> String {
    let mut s = format!("REFERENCES {}", ident(&f.table));
    if !f.columns.is_empty() {
        s.push_str(&format!(" ({})", f.columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", ")));
    }
    for (on, action) in [("DELETE", &f.on_delete), ("UPDATE", &f.on_update)] {
        if let Some(a) = action.as_ref().and_then(|a| ACTIONS.iter().find(|k| a.eq_ignore_ascii_case(k))) {
            s.push_str(&format!(" ON {on} {a}"));
        }
    }
    if f.deferred {
        s.push_str(" DEFERRABLE INITIALLY DEFERRED");
    }
    s
}

fn emit_table(t: &Table) -> String {
    emit_table_rest(t, t.columns.iter().map(emit_column).collect())
}

/// One column definition, as in `CREATE TABLE` and `ALTER TABLE … ADD COLUMN`.
/// A column definition as `CREATE TABLE` and `ADD COLUMN` take it, from the parsed
/// tree.
pub fn emit_column(c: &Column) -> String {
    let mut col = ident(&c.name);
    if !c.decl_type.is_empty() {
        col.push(' ');
        col.push_str(&c.decl_type);
    }
    for k in &c.constraints {
        col.push(' ');
        col.push_str(&constraint_name(k));
        col.push_str(&match &k.item {
            ColumnConstraint::PrimaryKey { desc, on_conflict: r, autoincrement } => format!(
                "PRIMARY KEY{}{}{}",
                if *desc { " DESC" } else { "" },
                on_conflict(r),
                if *autoincrement { " AUTOINCREMENT" } else { "" }
            ),
            ColumnConstraint::NotNull { on_conflict: r } => format!("NOT NULL{}", on_conflict(r)),
            ColumnConstraint::Null => "NULL".into(),
            ColumnConstraint::Unique { on_conflict: r } => format!("UNIQUE{}", on_conflict(r)),
            ColumnConstraint::Check(e) => format!("CHECK ({})", emit_tokens(e)),
            // A double-quoted word alone in DEFAULT is a string to SQLite.
            ColumnConstraint::Default(e) => match e.as_slice() {
                [Tok::Quoted(q)] => format!("DEFAULT ({})", emit_token(&Tok::Str(q.clone()))),
                _ => format!("DEFAULT ({})", emit_tokens(e)),
            },
            ColumnConstraint::Collate(name) => format!(
                "COLLATE {}",
                COLLATIONS.iter().find(|k| name.eq_ignore_ascii_case(k)).copied().unwrap_or("BINARY")
            ),
            ColumnConstraint::References(f) => references(f),
            ColumnConstraint::Generated { expr, stored } => {
                format!("GENERATED ALWAYS AS ({}) {}", emit_tokens(expr), if *stored { "STORED" } else { "VIRTUAL" })
            }
        });
    }
    col
}

/// The rest of [`emit_table`]: its table constraints and options.
fn emit_table_rest(t: &Table, mut parts: Vec<String>) -> String {
    for k in &t.constraints {
        parts.push(format!(
            "{}{}",
            constraint_name(k),
            match &k.item {
                TableConstraint::PrimaryKey { columns, on_conflict: r } => {
                    format!("PRIMARY KEY ({}){}", terms(columns), on_conflict(r))
                }
                TableConstraint::Unique { columns, on_conflict: r } => {
                    format!("UNIQUE ({}){}", terms(columns), on_conflict(r))
                }
                TableConstraint::Check(e) => format!("CHECK ({})", emit_tokens(e)),
                TableConstraint::ForeignKey { columns, references: f } => format!(
                    "FOREIGN KEY ({}) {}",
                    columns.iter().map(|c| ident(c)).collect::<Vec<_>>().join(", "),
                    references(f)
                ),
            }
        ));
    }
    let mut options = Vec::new();
    if t.without_rowid {
        options.push("WITHOUT ROWID");
    }
    if t.strict {
        options.push("STRICT");
    }
    format!(
        "CREATE TABLE {}{} ({}){}{}",
        if t.if_not_exists { "IF NOT EXISTS " } else { "" },
        ident(&t.name),
        parts.join(", "),
        if options.is_empty() { "" } else { " " },
        options.join(", ")
    )
}

fn emit_index(i: &Index) -> String {
    format!(
        "CREATE {}INDEX {}{} ON {} ({}){}",
        if i.unique { "UNIQUE " } else { "" },
        if i.if_not_exists { "IF NOT EXISTS " } else { "" },
        ident(&i.name),
        ident(&i.table),
        terms(&i.terms),
        i.predicate.as_ref().map(|p| format!(" WHERE {}", emit_tokens(p))).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(sql: &str) -> Vec<String> {
        match schema(sql) {
            Err(TranslateError::Refused(r)) => r.iter().map(|r| r.reason.code().to_string()).collect(),
            Err(e) => vec![format!("error: {e}")],
            Ok(s) => panic!("accepted: {s:?}"),
        }
    }

    #[test]
    fn only_create_table_and_index_parse() {
        for sql in [
            "ATTACH DATABASE 'x' AS y",
            "/*CREATE TABLE*/ ATTACH DATABASE 'x' AS y",
            "CREATE TABLE t (a) ; ATTACH 'x' AS y",
            "CREATE TABLE leak AS SELECT 1",
            "CREATE VIEW v AS SELECT 1",
            "CREATE TRIGGER x AFTER INSERT ON t BEGIN SELECT 1; END",
            "PRAGMA writable_schema = 1",
            "VACUUM INTO '/tmp/x'",
            "DROP TABLE t",
            "CREATE TABLE t (a) -- \n ; SELECT 1",
            "CREATE VIRTUAL TABLE t USING fts5(a)",
        ] {
            assert!(matches!(schema(sql), Err(TranslateError::Syntax(_))), "{sql}");
        }
    }

    #[test]
    fn expressions_read_only_their_arguments() {
        assert_eq!(refused("CREATE TABLE t (a TEXT CHECK (a IN (SELECT name FROM sqlite_master)))"), vec!["subquery"]);
        assert_eq!(refused("CREATE TABLE t (a TEXT DEFAULT (load_extension('x')))"), vec!["function"]);
        assert_eq!(refused("CREATE TABLE t (a, b AS (readfile('/etc/passwd')))"), vec!["function"]);
        assert_eq!(refused("CREATE TABLE t (a CHECK (cloudsync_payload_save('/x', 0)))"), vec!["function"]);
        assert_eq!(refused("CREATE TABLE t (a CHECK (EXISTS (SELECT 1)))"), vec!["subquery"]);
        assert_eq!(refused("CREATE TABLE t (a CHECK (a REGEXP 'x'))"), vec!["subquery"]);
        assert_eq!(refused("CREATE TABLE t (a CHECK (main.t.a > 0))"), vec!["operator"]);
        assert_eq!(refused("CREATE TABLE t (a); CREATE INDEX i ON t (a) WHERE random() > 0"), vec!["function"]);
        assert_eq!(refused("CREATE TABLE t (a CHECK (\"load_extension\"('x')))"), vec!["function"]);
        assert_eq!(
            refused("CREATE TABLE sqlite_x (a); CREATE TABLE cloudsync_y (a); CREATE TABLE z_cloudsync (a)"),
            vec!["reserved-name", "reserved-name", "reserved-name"]
        );
        assert_eq!(refused("CREATE TABLE t (a TEXT COLLATE evil)"), vec!["collation"]);
        // A temporary table, and its index, are left out (nothing to refuse).
        let emitted = schema_against(
            "CREATE TEMP TABLE t (a); CREATE INDEX t_a ON t (a); CREATE TABLE k (id TEXT PRIMARY KEY)",
            &crate::Existing::new(),
        )
        .unwrap();
        assert_eq!(emitted.len(), 1);
        assert!(emitted[0].sql.starts_with("CREATE TABLE \"k\""), "{}", emitted[0].sql);
    }

    #[test]
    fn what_runs_is_emitted_from_the_tree() {
        let out = schema(
            "CREATE TABLE IF NOT EXISTS [my \"t\"] (id TEXT PRIMARY KEY NOT NULL, n INTEGER DEFAULT -1 CHECK (n < 10 AND \
             lower('a''b') = 'a''b'), d TEXT DEFAULT CURRENT_TIMESTAMP, e DECIMAL(10, 2) DEFAULT 'x', \
             g AS (abs(n)) STORED, p TEXT REFERENCES other (id) ON DELETE CASCADE) WITHOUT ROWID, STRICT; \
             CREATE UNIQUE INDEX /* comment */ i ON \"my \"\"t\"\"\" (lower(d) COLLATE NOCASE DESC) WHERE n > 0",
        )
        .unwrap();
        assert_eq!(
            out[0].sql,
            "CREATE TABLE IF NOT EXISTS \"my \"\"t\"\"\" (\"id\" TEXT PRIMARY KEY NOT NULL, \"n\" INTEGER DEFAULT (- 1) \
             CHECK (n < 10 AND lower ( 'a''b' ) = 'a''b'), \"d\" TEXT DEFAULT (CURRENT_TIMESTAMP), \"e\" DECIMAL(10, 2) \
             DEFAULT ('x'), \"g\" GENERATED ALWAYS AS (abs ( n )) STORED, \"p\" TEXT REFERENCES \"other\" (\"id\") \
             ON DELETE CASCADE) WITHOUT ROWID, STRICT"
        );
        assert_eq!(
            out[1].sql,
            "CREATE UNIQUE INDEX \"i\" ON \"my \"\"t\"\"\" (lower ( d ) COLLATE NOCASE DESC) WHERE n > 0"
        );
    }

    #[test]
    fn policies_are_expressions() {
        assert_eq!(expression("owner = auth_uid() -- mine").unwrap(), "owner = auth_uid ( )");
        for bad in [
            "owner IN (SELECT id FROM users)",
            "1); ATTACH 'x' AS y; SELECT (1",
            "readfile('x') IS NOT NULL",
            "",
            "a = ?",
            "(1",
        ] {
            assert!(expression(bad).is_err(), "{bad}");
        }
    }
}
