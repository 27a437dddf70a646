//! The database page's "Connect a device" panel: the sync URL, a button that creates a
//! sync key, and snippets for Python, Node and the `sqlite3` shell with the URL, the
//! key (once created; shown only then) and the database's synced tables filled in.
//!
//! The dashboard runs no scripts (its CSP forbids them), so the snippets are made
//! copyable by CSS: one click selects a whole snippet.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Form;
use cloudsync_api::extract::Path;
use cloudsync_api::AppState;
use cloudsync_protocol::sync::SchemaTable;
use cloudsync_service::control::keys::Scope as KeyScope;
use leptos::prelude::*;
use serde::Deserialize;

use crate::admin::Admin;
use crate::ui::Csrf;
use crate::Problem;

/// A placeholder where the key goes until one is created here.
const KEY_PLACEHOLDER: &str = "csk_… (create a sync key above, or with `cloudsync key create --scope sync`)";

/// A string literal of SQL: single quotes doubled.
fn sql_str(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A string literal valid in both Python and JavaScript (JSON's escapes are theirs).
fn code_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `CREATE TABLE x …` as `CREATE TABLE IF NOT EXISTS x …`, so a snippet runs again on
/// every start of the app.
fn if_not_exists(create: &str) -> String {
    match create.strip_prefix("CREATE TABLE ") {
        Some(rest) if !rest.starts_with("IF NOT EXISTS") => format!("CREATE TABLE IF NOT EXISTS {rest}"),
        _ => create.to_string(),
    }
}

/// The three snippets: Python, Node, the `sqlite3` shell.
pub struct Snippets {
    /// Python with the wheel and apsw.
    pub python: String,
    /// Node with the npm package and better-sqlite3.
    pub node: String,
    /// The `sqlite3` shell with the stripped library.
    pub shell: String,
}

/// Snippets that connect a device to `sync_url` with `key` (or a placeholder),
/// creating `tables` first.
pub fn snippets(sync_url: &str, key: Option<&str>, tables: &[SchemaTable]) -> Snippets {
    let key = key.unwrap_or(KEY_PLACEHOLDER);
    let (creates, inits): (Vec<String>, Vec<String>) = if tables.is_empty() {
        (
            vec!["CREATE TABLE IF NOT EXISTS notes (id TEXT PRIMARY KEY NOT NULL, title TEXT)".into()],
            vec!["notes".into()],
        )
    } else {
        tables.iter().map(|t| (if_not_exists(t.create.trim().trim_end_matches(';')), t.table.clone())).unzip()
    };
    let init = |t: &String| format!("SELECT cloudsync_init({})", sql_str(t));

    let mut python = String::from(
        "# pip install cloudsync_sqlite-*.whl apsw   (cargo xtask package builds the wheel)\n\
         import apsw, cloudsync_sqlite\n\n\
         db = apsw.Connection(\"app.db\")\n\
         cloudsync_sqlite.load(db)\n",
    );
    for c in &creates {
        python.push_str(&format!("db.execute({})\n", code_str(c)));
    }
    for t in &inits {
        python.push_str(&format!("db.execute({})\n", code_str(&init(t))));
    }
    python.push_str(&format!(
        "db.execute(\"SELECT cloudsync_network_init(?)\", ({},))\n\
         db.execute(\"SELECT cloudsync_network_set_apikey(?)\", ({},))\n\
         print(db.execute(\"SELECT cloudsync_network_sync(1000)\").fetchone()[0])\n",
        code_str(sync_url),
        code_str(key)
    ));

    let mut node = String::from(
        "// npm install ./cloudsync-sqlite-*.tgz better-sqlite3@12\n\
         const Database = require('better-sqlite3');\n\
         const cloudsync = require('cloudsync-sqlite');\n\n\
         const db = new Database('app.db');\n\
         cloudsync.load(db);\n",
    );
    for c in &creates {
        node.push_str(&format!("db.exec({});\n", code_str(c)));
    }
    for t in &inits {
        node.push_str(&format!("db.prepare({}).get();\n", code_str(&init(t))));
    }
    node.push_str(&format!(
        "db.prepare('SELECT cloudsync_network_init(?)').get({});\n\
         db.prepare('SELECT cloudsync_network_set_apikey(?)').get({});\n\
         console.log(db.prepare('SELECT cloudsync_network_sync(1000) AS r').get().r);\n",
        code_str(sync_url),
        code_str(key)
    ));

    let mut shell =
        String::from("-- sqlite3 app.db   (libcloudsync.so from cargo xtask package)\n.load ./libcloudsync\n");
    for c in &creates {
        shell.push_str(&format!("{c};\n"));
    }
    for t in &inits {
        shell.push_str(&format!("{};\n", init(t)));
    }
    shell.push_str(&format!(
        "SELECT cloudsync_network_init({});\nSELECT cloudsync_network_set_apikey({});\nSELECT cloudsync_network_sync(1000);\n",
        sql_str(sync_url),
        sql_str(key)
    ));
    Snippets { python, node, shell }
}

/// The panel: the key just created (or the button that creates one), and the
/// snippets for `tables` with it.
pub fn panel(base: &str, csrf: &str, sync_url: &str, fresh_key: Option<&str>, tables: &[SchemaTable]) -> impl IntoView {
    let s = snippets(sync_url, fresh_key, tables);
    let key_part = match fresh_key {
        Some(k) => view! {
            <div class="secret" role="status" id="connect-key">
                <p>"Sync key created. It is shown only this once, here and in the snippets below:"</p>
                <p><code>{k.to_string()}</code></p>
            </div>
        }
        .into_any(),
        None => view! {
            <form method="post" action=format!("{base}/connect") class="inline">
                <Csrf token=csrf.to_string()/>
                <button type="submit" id="create-sync-key">"Create a sync key"</button>
                " "
                <span class="hint">"A key with the sync scope only, for devices; revoke it on the tenant's page."</span>
            </form>
        }
        .into_any(),
    };
    let snippet = |id: &'static str, label: &'static str, text: String| {
        view! {
            <div class="snippet">
                <h3 id=format!("{id}-h")>{label}</h3>
                <pre class="copy" aria-labelledby=format!("{id}-h")><code id=id>{text}</code></pre>
            </div>
        }
    };
    view! {
        <section aria-labelledby="connect-h">
            <h2 id="connect-h">"Connect a device"</h2>
            <p>"Sync URL: "<code id="connect-url">{sync_url.to_string()}</code></p>
            {key_part}
            <p class="hint">"Click a snippet to select all of it. The packages are built by "<code>"cargo xtask package"</code>" (docs/packaging.md)."</p>
            {snippet("snippet-python", "Python (apsw or sqlite3)", s.python)}
            {snippet("snippet-node", "Node (better-sqlite3)", s.node)}
            {snippet("snippet-shell", "sqlite3 shell", s.shell)}
        </section>
    }
}

/// The button's form (its CSRF token is checked by the session guard).
#[derive(Deserialize)]
pub struct ConnectForm {}

/// `POST /admin/tenants/{tenant}/databases/{db}/connect`: creates a sync-scoped key
/// named after the database and shows the page with it filled into the snippets.
pub async fn create_key(
    State(state): State<AppState>,
    admin: Admin,
    Path((t, db)): Path<(String, String)>,
    Form(_): Form<ConnectForm>,
) -> Result<Response, Problem> {
    let (tenant, database) = crate::database::load(&state, &admin, &t, &db).await?;
    let name = format!("devices of {}", database.name.chars().take(100).collect::<String>());
    let (key, secret) = state.control.create_api_key(&tenant.id, &name, &[KeyScope::Sync], None).await?;
    tracing::info!(tenant = %tenant.id, key = %key.id, database = %database.id, "sync key created from the connect panel");
    crate::database::render_with_key(&state, &admin, (tenant, database), secret, StatusCode::CREATED).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(name: &str, create: &str) -> SchemaTable {
        SchemaTable { table: name.into(), algo: "cls".into(), create: create.into(), columns: vec![] }
    }

    #[test]
    fn values_are_quoted_for_each_language() {
        let t = [table("it's", "CREATE TABLE \"it's\" (id TEXT PRIMARY KEY NOT NULL, \"a\"\"b\" TEXT);")];
        let s = snippets("http://h/v1/sync/d'x", Some("csk_k\"'"), &t);
        assert!(s.shell.contains("SELECT cloudsync_init('it''s');"), "{}", s.shell);
        assert!(s.shell.contains("cloudsync_network_init('http://h/v1/sync/d''x')"), "{}", s.shell);
        assert!(
            s.shell.contains("CREATE TABLE IF NOT EXISTS \"it's\" (id TEXT PRIMARY KEY NOT NULL, \"a\"\"b\" TEXT);"),
            "{}",
            s.shell
        );
        assert!(s.python.contains(r#"("csk_k\"'",)"#), "{}", s.python);
        assert!(s.node.contains(r#".get("csk_k\"'");"#), "{}", s.node);
        assert!(s.node.contains(r#"db.prepare("SELECT cloudsync_init('it''s')").get();"#), "{}", s.node);
    }

    #[test]
    fn without_a_key_or_tables_the_snippets_say_what_to_put() {
        let s = snippets("http://h/v1/sync/d", None, &[]);
        assert!(s.shell.contains("csk_… (create a sync key above"), "{}", s.shell);
        assert!(s.python.contains("cloudsync_init('notes')"), "{}", s.python);
    }
}
