//! The parser of schema statements: tokens ([`super::lex`]) into the syntax tree of
//! [`super`].
//!
//! One file, over 500 lines: one grammar (CREATE TABLE / CREATE INDEX), read top-down.

use super::lex::{lex, Spanned, Tok};
use super::{
    Column, ColumnConstraint, DdlError, ForeignKey, Index, IndexedTerm, Named, Statement, Table, TableConstraint,
};

/// Words that end a column's type and start a constraint.
const CONSTRAINT_START: [&str; 11] =
    ["CONSTRAINT", "PRIMARY", "NOT", "NULL", "UNIQUE", "CHECK", "DEFAULT", "COLLATE", "REFERENCES", "GENERATED", "AS"];

struct Parser {
    toks: Vec<Spanned>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|s| &s.tok)
    }

    fn peek_at(&self, n: usize) -> Option<&Tok> {
        self.toks.get(self.pos + n).map(|s| &s.tok)
    }

    fn line(&self) -> usize {
        self.toks.get(self.pos).or_else(|| self.toks.last()).map_or(1, |s| s.line)
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, DdlError> {
        Err(DdlError::Syntax { line: self.line(), message: message.into() })
    }

    fn next(&mut self) -> Result<Tok, DdlError> {
        match self.toks.get(self.pos) {
            Some(s) => {
                self.pos += 1;
                Ok(s.tok.clone())
            }
            None => self.fail("unexpected end of input"),
        }
    }

    fn eat(&mut self, kw: &str) -> bool {
        if self.peek().is_some_and(|t| t.is(kw)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_punct(&mut self, p: &str) -> bool {
        if self.peek().is_some_and(|t| t.is_punct(p)) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, kw: &str) -> Result<(), DdlError> {
        if self.eat(kw) {
            Ok(())
        } else {
            self.fail(format!("expected {kw}, found {}", self.shown()))
        }
    }

    fn expect_punct(&mut self, p: &str) -> Result<(), DdlError> {
        if self.eat_punct(p) {
            Ok(())
        } else {
            self.fail(format!("expected '{p}', found {}", self.shown()))
        }
    }

    fn shown(&self) -> String {
        match self.peek() {
            None => "end of input".into(),
            Some(Tok::Word(w)) => w.clone(),
            Some(Tok::Quoted(q)) => format!("\"{q}\""),
            Some(Tok::Str(s)) => format!("'{s}'"),
            Some(Tok::Blob(b)) => format!("X'{b}'"),
            Some(Tok::Num(n)) => n.clone(),
            Some(Tok::Punct(p)) => format!("'{p}'"),
        }
    }

    /// An identifier: bare word, quoted identifier, or (as SQLite allows) a string.
    fn name(&mut self) -> Result<String, DdlError> {
        match self.next()? {
            Tok::Word(w) | Tok::Quoted(w) | Tok::Str(w) => Ok(w),
            _ => {
                self.pos -= 1;
                self.fail(format!("expected a name, found {}", self.shown()))
            }
        }
    }

    /// A possibly schema-qualified name; the qualifier is dropped.
    fn qualified_name(&mut self) -> Result<String, DdlError> {
        let first = self.name()?;
        if self.eat_punct(".") {
            return self.name();
        }
        Ok(first)
    }

    /// The tokens of a parenthesised group, after its `(` (consumed with its `)`).
    fn group(&mut self) -> Result<Vec<Tok>, DdlError> {
        self.expect_punct("(")?;
        let mut depth = 1;
        let mut out = Vec::new();
        loop {
            let t = self.next()?;
            if t.is_punct("(") {
                depth += 1;
            } else if t.is_punct(")") {
                depth -= 1;
                if depth == 0 {
                    return Ok(out);
                }
            }
            out.push(t);
        }
    }

    /// Tokens up to (not including) a `,`, `)` or `;` at depth 0, or one of `stop` words.
    fn until_separator(&mut self, stop: &[&str]) -> Result<Vec<Tok>, DdlError> {
        let mut depth = 0;
        let mut out = Vec::new();
        while let Some(t) = self.peek() {
            if depth == 0 && (t.is_punct(",") || t.is_punct(")") || t.is_punct(";") || stop.iter().any(|s| t.is(s))) {
                break;
            }
            if t.is_punct("(") {
                depth += 1;
            } else if t.is_punct(")") {
                depth -= 1;
            }
            out.push(self.next()?);
        }
        Ok(out)
    }

    fn on_conflict(&mut self) -> Result<Option<String>, DdlError> {
        if self.peek().is_some_and(|t| t.is("ON")) && self.peek_at(1).is_some_and(|t| t.is("CONFLICT")) {
            self.pos += 2;
            return Ok(Some(self.name()?.to_ascii_uppercase()));
        }
        Ok(None)
    }

    fn name_list(&mut self) -> Result<Vec<String>, DdlError> {
        self.expect_punct("(")?;
        let mut out = vec![self.name()?];
        while self.eat_punct(",") {
            out.push(self.name()?);
        }
        self.expect_punct(")")?;
        Ok(out)
    }

    fn indexed_terms(&mut self) -> Result<Vec<IndexedTerm>, DdlError> {
        self.expect_punct("(")?;
        let mut terms = Vec::new();
        loop {
            let expr = self.until_separator(&["COLLATE", "ASC", "DESC"])?;
            if expr.is_empty() {
                return self.fail("empty index term");
            }
            let collate = if self.eat("COLLATE") { Some(self.name()?) } else { None };
            let desc = if self.eat("DESC") {
                true
            } else {
                self.eat("ASC");
                false
            };
            let name = match expr.as_slice() {
                [Tok::Word(w) | Tok::Quoted(w) | Tok::Str(w)] => Some(w.clone()),
                _ => None,
            };
            terms.push(IndexedTerm { name, expr, collate, desc });
            if self.eat_punct(")") {
                return Ok(terms);
            }
            self.expect_punct(",")?;
        }
    }

    fn foreign_key(&mut self) -> Result<ForeignKey, DdlError> {
        let table = self.qualified_name()?;
        let columns = if self.peek().is_some_and(|t| t.is_punct("(")) { self.name_list()? } else { Vec::new() };
        let mut fk = ForeignKey { table, columns, on_delete: None, on_update: None, deferred: false };
        loop {
            if self.eat("ON") {
                let event = self.name()?.to_ascii_uppercase();
                let action = if self.eat("SET") {
                    format!("SET {}", self.name()?.to_ascii_uppercase())
                } else if self.eat("NO") {
                    self.expect("ACTION")?;
                    "NO ACTION".into()
                } else {
                    self.name()?.to_ascii_uppercase()
                };
                match event.as_str() {
                    "DELETE" => fk.on_delete = Some(action),
                    "UPDATE" => fk.on_update = Some(action),
                    other => return self.fail(format!("expected ON DELETE or ON UPDATE, found ON {other}")),
                }
            } else if self.eat("MATCH") {
                self.name()?;
            } else if self.peek().is_some_and(|t| t.is("NOT")) && self.peek_at(1).is_some_and(|t| t.is("DEFERRABLE")) {
                self.pos += 2;
                self.initially()?;
            } else if self.eat("DEFERRABLE") {
                fk.deferred = self.initially()?;
            } else {
                return Ok(fk);
            }
        }
    }

    /// `[INITIALLY DEFERRED | INITIALLY IMMEDIATE]`; true for deferred.
    fn initially(&mut self) -> Result<bool, DdlError> {
        if self.eat("INITIALLY") {
            return Ok(self.name()?.eq_ignore_ascii_case("DEFERRED"));
        }
        Ok(false)
    }

    fn column(&mut self) -> Result<Column, DdlError> {
        let name = self.name()?;
        let mut words: Vec<String> = Vec::new();
        while let Some(t) = self.peek() {
            match t {
                Tok::Word(w) if !CONSTRAINT_START.iter().any(|k| w.eq_ignore_ascii_case(k)) => {
                    words.push(w.clone());
                    self.pos += 1;
                }
                Tok::Quoted(w) if words.is_empty() => {
                    words.push(w.clone());
                    self.pos += 1;
                }
                _ => break,
            }
        }
        let mut decl_type = words.join(" ");
        if !words.is_empty() && self.peek().is_some_and(|t| t.is_punct("(")) {
            let params = self.group()?;
            let text: Vec<String> = params
                .iter()
                .map(|t| match t {
                    Tok::Num(n) | Tok::Word(n) => n.clone(),
                    Tok::Punct(p) => p.clone(),
                    _ => String::new(),
                })
                .collect();
            decl_type = format!("{decl_type}({})", text.join("").replace(',', ", "));
        }
        let mut constraints = Vec::new();
        loop {
            let cname = if self.eat("CONSTRAINT") { Some(self.name()?) } else { None };
            let item = if self.eat("PRIMARY") {
                self.expect("KEY")?;
                let desc = self.eat("DESC");
                if !desc {
                    self.eat("ASC");
                }
                let on_conflict = self.on_conflict()?;
                let autoincrement = self.eat("AUTOINCREMENT");
                ColumnConstraint::PrimaryKey { desc, on_conflict, autoincrement }
            } else if self.eat("NOT") {
                self.expect("NULL")?;
                ColumnConstraint::NotNull { on_conflict: self.on_conflict()? }
            } else if self.eat("NULL") {
                ColumnConstraint::Null
            } else if self.eat("UNIQUE") {
                ColumnConstraint::Unique { on_conflict: self.on_conflict()? }
            } else if self.eat("CHECK") {
                ColumnConstraint::Check(self.group()?)
            } else if self.eat("DEFAULT") {
                ColumnConstraint::Default(self.default_value()?)
            } else if self.eat("COLLATE") {
                ColumnConstraint::Collate(self.name()?)
            } else if self.eat("REFERENCES") {
                ColumnConstraint::References(self.foreign_key()?)
            } else if self.eat("GENERATED") || self.peek().is_some_and(|t| t.is("AS")) {
                self.eat("ALWAYS");
                self.expect("AS")?;
                let expr = self.group()?;
                let stored = self.eat("STORED");
                if !stored {
                    self.eat("VIRTUAL");
                }
                ColumnConstraint::Generated { expr, stored }
            } else if cname.is_some() {
                return self.fail(format!("expected a constraint after CONSTRAINT name, found {}", self.shown()));
            } else {
                break;
            };
            constraints.push(Named { name: cname, item });
        }
        Ok(Column { name, decl_type, constraints })
    }

    fn default_value(&mut self) -> Result<Vec<Tok>, DdlError> {
        if self.peek().is_some_and(|t| t.is_punct("(")) {
            return self.group();
        }
        let first = self.next()?;
        if first.is_punct("-") || first.is_punct("+") {
            let n = self.next()?;
            if !matches!(n, Tok::Num(_)) {
                return self.fail("expected a number after a sign in DEFAULT");
            }
            return Ok(vec![first, n]);
        }
        match first {
            Tok::Punct(p) => self.fail(format!("unexpected '{p}' in DEFAULT")),
            t => Ok(vec![t]),
        }
    }

    fn table_constraint(&mut self) -> Result<Option<Named<TableConstraint>>, DdlError> {
        let start = self.pos;
        let cname = if self.eat("CONSTRAINT") { Some(self.name()?) } else { None };
        let item = if self.eat("PRIMARY") {
            self.expect("KEY")?;
            let columns = self.indexed_terms()?;
            let on_conflict = self.on_conflict()?;
            self.eat("AUTOINCREMENT");
            TableConstraint::PrimaryKey { columns, on_conflict }
        } else if self.eat("UNIQUE") {
            let columns = self.indexed_terms()?;
            TableConstraint::Unique { columns, on_conflict: self.on_conflict()? }
        } else if self.eat("CHECK") {
            TableConstraint::Check(self.group()?)
        } else if self.eat("FOREIGN") {
            self.expect("KEY")?;
            let columns = self.name_list()?;
            self.expect("REFERENCES")?;
            TableConstraint::ForeignKey { columns, references: self.foreign_key()? }
        } else {
            self.pos = start;
            return Ok(None);
        };
        Ok(Some(Named { name: cname, item }))
    }

    fn create_table(&mut self, temp: bool) -> Result<Table, DdlError> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.qualified_name()?;
        if self.peek().is_some_and(|t| t.is("AS")) {
            return self.fail(format!("CREATE TABLE {name} AS SELECT is not a schema definition"));
        }
        self.expect_punct("(")?;
        let mut table = Table { name, temp, if_not_exists, ..Table::default() };
        let mut in_constraints = false;
        loop {
            // A table constraint may follow another without a comma (SQLite accepts it).
            if let Some(c) = self.table_constraint()? {
                table.constraints.push(c);
                in_constraints = true;
            } else if in_constraints {
                return self.fail(format!("expected a table constraint, found {}", self.shown()));
            } else {
                table.columns.push(self.column()?);
            }
            if self.eat_punct(")") {
                break;
            }
            if !self.eat_punct(",") && !in_constraints {
                return self.fail(format!("expected ',' or ')' in the column list, found {}", self.shown()));
            }
        }
        loop {
            if self.eat("WITHOUT") {
                let w = self.name()?;
                if !w.eq_ignore_ascii_case("ROWID") {
                    return self.fail(format!("expected WITHOUT ROWID, found WITHOUT {w}"));
                }
                table.without_rowid = true;
            } else if self.eat("STRICT") {
                table.strict = true;
            } else if !self.eat_punct(",") {
                break;
            }
        }
        Ok(table)
    }

    fn if_not_exists(&mut self) -> Result<bool, DdlError> {
        if self.eat("IF") {
            self.expect("NOT")?;
            self.expect("EXISTS")?;
            return Ok(true);
        }
        Ok(false)
    }

    fn create_index(&mut self, unique: bool) -> Result<Index, DdlError> {
        let if_not_exists = self.if_not_exists()?;
        let name = self.qualified_name()?;
        self.expect("ON")?;
        let table = self.qualified_name()?;
        let terms = self.indexed_terms()?;
        let predicate = if self.eat("WHERE") { Some(self.until_separator(&[])?) } else { None };
        Ok(Index { name, unique, if_not_exists, table, terms, predicate })
    }

    fn statement(&mut self) -> Result<Statement, DdlError> {
        if self.eat("ALTER") {
            self.expect("TABLE")?;
            let table = self.qualified_name()?;
            if !self.eat("ADD") {
                return self.fail(format!(
                    "ALTER TABLE takes only ADD COLUMN here, found {}: a synced column cannot be dropped or renamed \
                     while devices hold it (add a new column instead)",
                    self.shown()
                ));
            }
            self.eat("COLUMN");
            let column = self.column()?;
            return Ok(Statement::AddColumn { table, column });
        }
        if !self.eat("CREATE") {
            return self.fail(format!(
                "only CREATE TABLE, CREATE INDEX and ALTER TABLE … ADD COLUMN statements are accepted, found {}",
                self.shown()
            ));
        }
        let temp = self.eat("TEMP") || self.eat("TEMPORARY");
        if self.eat("TABLE") {
            return Ok(Statement::Table(self.create_table(temp)?));
        }
        let unique = self.eat("UNIQUE");
        if !temp && self.eat("INDEX") {
            return Ok(Statement::Index(self.create_index(unique)?));
        }
        self.fail(format!(
            "only CREATE TABLE and CREATE INDEX are schema definitions cloudsync translates, found CREATE {}",
            self.shown()
        ))
    }
}

/// Parses schema SQL: `CREATE TABLE`, `CREATE INDEX` and `ALTER TABLE … ADD COLUMN`
/// statements separated by `;`.
pub fn parse(sql: &str) -> Result<Vec<Statement>, DdlError> {
    let mut p = Parser { toks: lex(sql)?, pos: 0 };
    let mut out = Vec::new();
    loop {
        while p.eat_punct(";") {}
        if p.peek().is_none() {
            return Ok(out);
        }
        out.push(p.statement()?);
        if p.peek().is_some() && !p.eat_punct(";") {
            return p.fail(format!("expected ';' after the statement, found {}", p.shown()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(sql: &str) -> Table {
        match parse(sql).unwrap().remove(0) {
            Statement::Table(t) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn columns_types_and_constraints() {
        let t = table(
            "CREATE TABLE IF NOT EXISTS main.\"user\" (
               id INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL,
               [name] NVARCHAR(160) COLLATE NOCASE NOT NULL UNIQUE ON CONFLICT FAIL,
               price DECIMAL(5,2) DEFAULT 4.99 CHECK (price >= 0),
               delta INTEGER DEFAULT -1,
               blob_col BLOB SUB_TYPE TEXT,
               anything,
               created TEXT DEFAULT (datetime('now')),
               owner INTEGER CONSTRAINT fk_owner REFERENCES people (id) ON DELETE SET NULL ON UPDATE CASCADE DEFERRABLE INITIALLY DEFERRED,
               lower_name TEXT GENERATED ALWAYS AS (lower(name)) VIRTUAL
             ) WITHOUT ROWID, STRICT",
        );
        assert_eq!(t.name, "user");
        assert!(t.if_not_exists && t.without_rowid && t.strict);
        let types: Vec<&str> = t.columns.iter().map(|c| c.decl_type.as_str()).collect();
        assert_eq!(
            types,
            [
                "INTEGER",
                "NVARCHAR(160)",
                "DECIMAL(5, 2)",
                "INTEGER",
                "BLOB SUB_TYPE TEXT",
                "",
                "TEXT",
                "INTEGER",
                "TEXT"
            ]
        );
        assert_eq!(t.primary_key(), ["id"]);
        assert!(matches!(
            t.columns[0].constraints[0].item,
            ColumnConstraint::PrimaryKey { autoincrement: true, desc: false, .. }
        ));
        assert_eq!(t.columns[1].constraints[2].item, ColumnConstraint::Unique { on_conflict: Some("FAIL".into()) });
        assert_eq!(
            t.columns[3].constraints[0].item,
            ColumnConstraint::Default(vec![Tok::Punct("-".into()), Tok::Num("1".into())])
        );
        let ColumnConstraint::References(fk) = &t.columns[7].constraints[0].item else { panic!() };
        assert_eq!(t.columns[7].constraints[0].name.as_deref(), Some("fk_owner"));
        assert_eq!(
            (fk.on_delete.as_deref(), fk.on_update.as_deref(), fk.deferred),
            (Some("SET NULL"), Some("CASCADE"), true)
        );
        assert!(matches!(t.columns[8].constraints[0].item, ColumnConstraint::Generated { stored: false, .. }));
    }

    #[test]
    fn table_constraints_indexes_and_refusals() {
        let stmts = parse(
            "CREATE TABLE t (a TEXT, b TEXT, CONSTRAINT pk PRIMARY KEY (a, b DESC), FOREIGN KEY (b) REFERENCES u
               CHECK (a <> b), UNIQUE (b COLLATE NOCASE));
             CREATE UNIQUE INDEX IF NOT EXISTS ix ON t (lower(a), b DESC) WHERE a IS NOT NULL;",
        )
        .unwrap();
        let Statement::Table(t) = &stmts[0] else { panic!() };
        assert_eq!(t.primary_key(), ["a", "b"]);
        assert_eq!(t.constraints.len(), 4);
        let Statement::Index(ix) = &stmts[1] else { panic!() };
        assert!(ix.unique && ix.if_not_exists && ix.predicate.is_some());
        assert_eq!((ix.terms[0].name.clone(), ix.terms[1].desc), (None, true));
        let err = parse("CREATE VIEW v AS SELECT 1").unwrap_err();
        assert!(err.to_string().contains("found CREATE VIEW"), "{err}");
        assert!(parse("CREATE TABLE t (a INTEGER,").is_err());
    }
}
