//! `cargo xtask package`: the artifacts a user installs, in `<target>/package/`, and
//! the test that installs them as a user would (`docs/packaging.md`).
//!
//! | artifact | what |
//! |---|---|
//! | `libcloudsync.so` | the loadable extension, stripped (the `sqlite3` shell's `.load`, any host) |
//! | `cloudsync_sqlite-<v>-py3-none-<platform>.whl` | Python: `cloudsync_sqlite.load(conn)` for `sqlite3` and `apsw`, `.path()` |
//! | `cloudsync-sqlite-<v>.tgz` | Node: `require('cloudsync-sqlite').load(db)` for better-sqlite3, `.path()` |
//! | `jvm-example/` | xerial sqlite-jdbc loading the library, built with Maven |
//! | `cloudsync` | the service and CLI binary, stripped, within [`SERVICE_BUDGET`] |
//!
//! Artifacts are release builds with their debug information stripped by binutils'
//! `strip`: the release profile keeps line tables for benchmarks and backtraces, and a
//! second profile would build every crate twice in CI.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use anyhow::{bail, ensure, Context, Result};

use crate::sys::{self, root, run, step};

/// Size budget of the stripped extension: it ships inside every app.
pub const EXTENSION_BUDGET: u64 = 10 << 20;
/// Size budget of the stripped service binary: one static-ish binary holding the
/// HTTP server, both control-plane drivers (SQLite bundled, PostgreSQL), the S3
/// client with its TLS stack, the dashboard and the engine (`docs/packaging.md`).
pub const SERVICE_BUDGET: u64 = 48 << 20;

/// The artifacts of one `package` run.
pub struct Package {
    /// `<target>/package`.
    pub dir: PathBuf,
    /// The wheel.
    pub wheel: PathBuf,
    /// The npm tarball.
    pub npm: PathBuf,
    /// The stripped extension.
    pub extension: PathBuf,
    /// The stripped service binary.
    pub service: PathBuf,
}

/// The workspace's version, as `cargo metadata` reads it.
fn version() -> Result<String> {
    let out = sys::cargo_command()
        .args(["metadata", "--no-deps", "--format-version", "1"])
        .output()
        .context("cannot run cargo metadata")?;
    ensure!(out.status.success(), "cargo metadata failed");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "cloudsync-sqlite"))
        .and_then(|p| p["version"].as_str())
        .map(str::to_string)
        .context("no version of cloudsync-sqlite in cargo metadata")
}

/// A stripped copy of `from` at `to`.
fn stripped(from: &Path, to: &Path) -> Result<()> {
    std::fs::copy(from, to).with_context(|| format!("copying {}", from.display()))?;
    run(Command::new("strip").arg("--strip-debug").arg("--strip-unneeded").arg(to))
}

pub(crate) fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let dest = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            std::fs::copy(entry.path(), &dest)?;
        }
    }
    Ok(())
}

/// Copies a template folder, putting the version in for `@VERSION@`.
fn template(from: &Path, to: &Path, version: &str) -> Result<()> {
    copy_dir(from, to)?;
    for entry in walk(to)? {
        if let Ok(text) = std::fs::read_to_string(&entry) {
            if text.contains("@VERSION@") {
                std::fs::write(&entry, text.replace("@VERSION@", version))?;
            }
        }
    }
    Ok(())
}

fn walk(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.extend(walk(&entry.path())?);
        } else {
            out.push(entry.path());
        }
    }
    Ok(out)
}

fn size(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?.len())
}

fn mib(bytes: u64) -> String {
    // Sizes are shown to a tenth of a MiB.
    format!("{}.{} MiB", bytes >> 20, ((bytes & ((1 << 20) - 1)) * 10) >> 20)
}

/// Builds every artifact into `<target>/package/` and prints their sizes; fails when
/// one is over its budget.
pub fn build() -> Result<Package> {
    let version = version()?;
    let dir = sys::target_dir().join("package");
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
    }
    std::fs::create_dir_all(&dir)?;
    let templates = root().join("packaging");

    step("Package: the extension (release, stripped)");
    let so = crate::ext::build()?;
    let extension = dir.join("libcloudsync.so");
    stripped(&so, &extension)?;

    step("Package: the service binary (release, stripped)");
    sys::cargo(&["build", "--release", "--locked", "-p", "cloudsync", "--bin", "cloudsync"])?;
    let service = dir.join("cloudsync");
    stripped(&sys::target_dir().join("release/cloudsync"), &service)?;

    step("Package: Python wheel");
    let py = dir.join("python");
    template(&templates.join("python"), &py, &version)?;
    std::fs::copy(&extension, py.join("cloudsync_sqlite/libcloudsync.so"))?;
    let out = Command::new("python3")
        .arg(templates.join("build_wheel.py"))
        .arg(&py)
        .arg(&version)
        .arg(&dir)
        .output()
        .context("cannot run python3")?;
    ensure!(out.status.success(), "building the wheel failed: {}", String::from_utf8_lossy(&out.stderr));
    let wheel = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());

    step("Package: npm package");
    let npm_dir = dir.join("npm");
    template(&templates.join("npm"), &npm_dir, &version)?;
    std::fs::create_dir_all(npm_dir.join("lib"))?;
    std::fs::copy(&extension, npm_dir.join("lib/libcloudsync.so"))?;
    run(Command::new("npm").args(["pack", "--silent", "--pack-destination"]).arg(&dir).current_dir(&npm_dir))?;
    let npm = dir.join(format!("cloudsync-sqlite-{version}.tgz"));
    ensure!(npm.exists(), "npm pack did not write {}", npm.display());

    step("Package: JVM example");
    template(&templates.join("jvm"), &dir.join("jvm-example"), &version)?;

    let sizes = [
        ("libcloudsync.so (extension)", size(&extension)?, Some(EXTENSION_BUDGET)),
        (wheel.file_name().and_then(|f| f.to_str()).unwrap_or("wheel"), size(&wheel)?, None),
        (npm.file_name().and_then(|f| f.to_str()).unwrap_or("npm"), size(&npm)?, None),
        ("cloudsync (service and CLI)", size(&service)?, Some(SERVICE_BUDGET)),
    ];
    println!("artifact sizes ({version}):");
    let mut over = Vec::new();
    for (name, bytes, budget) in &sizes {
        let budget_text = budget.map(|b| format!("   budget {}", mib(b))).unwrap_or_default();
        println!("  {name:<60} {:>10}{budget_text}", mib(*bytes));
        if budget.is_some_and(|b| *bytes > b) {
            over.push(*name);
        }
    }
    let json: Vec<serde_json::Value> = sizes
        .iter()
        .map(|(name, bytes, budget)| serde_json::json!({ "artifact": name, "bytes": bytes, "budget": budget }))
        .collect();
    std::fs::write(dir.join("sizes.json"), serde_json::to_vec_pretty(&json)?)?;
    ensure!(over.is_empty(), "over budget: {}", over.join(", "));
    Ok(Package { dir, wheel, npm, extension, service })
}

/// `cargo xtask package [--record] [--test]`: builds the packages and prints their
/// folder last; `--record` writes the sizes into `docs/packaging.md`, `--test` installs
/// and runs them ([`test`]).
pub fn command(args: &[String]) -> Result<()> {
    let p = build()?;
    if args.iter().any(|a| a == "--record") {
        record(&p)?;
    }
    if args.iter().any(|a| a == "--test") {
        test(&p)?;
    }
    println!("{}", p.dir.display());
    Ok(())
}

/// Replaces the sizes table of `docs/packaging.md` (between its markers).
fn record(p: &Package) -> Result<()> {
    let doc = root().join("docs/packaging.md");
    let text = std::fs::read_to_string(&doc)?;
    let (begin, end) = ("<!-- sizes:begin -->", "<!-- sizes:end -->");
    let (Some(a), Some(b)) = (text.find(begin), text.find(end)) else { bail!("docs/packaging.md has no size markers") };
    let commit = Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(root())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let mut table = format!(
        "{begin}\nMeasured on commit {commit} (x86_64 Linux, glibc):\n\n| artifact | size | budget |\n|---|---|---|\n"
    );
    let sizes: serde_json::Value = serde_json::from_slice(&std::fs::read(p.dir.join("sizes.json"))?)?;
    for s in sizes.as_array().into_iter().flatten() {
        let bytes = s["bytes"].as_u64().unwrap_or(0);
        let budget = s["budget"].as_u64().map(mib).unwrap_or_else(|| "-".into());
        table.push_str(&format!("| `{}` | {} | {budget} |\n", s["artifact"].as_str().unwrap_or(""), mib(bytes)));
    }
    let new = format!("{}{table}{}", &text[..a], &text[b..]);
    std::fs::write(&doc, new)?;
    println!("recorded in {}", doc.display());
    Ok(())
}

/// A node from the packaged binary, on a free port, in a scratch data directory; the
/// CLI finds it through the data directory, as a user's would.
struct Node {
    child: Child,
    data_dir: PathBuf,
    bin: PathBuf,
}

impl Node {
    fn start(bin: &Path, data_dir: &Path) -> Result<Node> {
        let child = Command::new(bin)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .context("starting the packaged cloudsync")?;
        let node = Node { child, data_dir: data_dir.to_path_buf(), bin: bin.to_path_buf() };
        run(node.cli().args(["check-health", "--wait", "60"]))?;
        Ok(node)
    }

    fn cli(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("CLOUDSYNC_DATA_DIR", &self.data_dir);
        c
    }

    /// One CLI command's `--field` answer.
    fn field(&self, args: &[&str], field: &str) -> Result<String> {
        let out = self.cli().args(args).args(["--field", field]).output()?;
        ensure!(out.status.success(), "cloudsync {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Installs each package where nothing of the build tree is reachable and syncs two
/// databases through a node of the packaged binary: the wheel in a fresh venv (Debian's
/// Python, whose `sqlite3` loads extensions, and apsw), the npm package in a fresh
/// folder with better-sqlite3, the JVM example through Maven from Debian's repository.
pub fn test(p: &Package) -> Result<()> {
    let scratch = std::env::temp_dir().join(format!("cloudsync-packages-{}", std::process::id()));
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch)?;
    }
    std::fs::create_dir_all(&scratch)?;
    let node = Node::start(&p.service, &scratch.join("node"))?;
    std::fs::write(scratch.join("schema.sql"), "CREATE TABLE notes (id TEXT PRIMARY KEY NOT NULL, title TEXT);\n")?;
    node.field(&["tenant", "create", "--name", "packages"], "id")?;
    node.field(&["database", "create", "--tenant", "packages", "--name", "notes"], "id")?;
    let schema = scratch.join("schema.sql");
    let schema = schema.to_string_lossy();
    node.field(&["schema", "apply", "--tenant", "packages", "--database", "notes", "--file", &schema], "tables")?;
    let url = node.field(&["database", "get", "--tenant", "packages", "notes"], "sync_url")?;
    let key = node.field(&["key", "create", "--tenant", "packages", "--name", "pkg", "--scope", "sync"], "key")?;
    let tests = root().join("packaging/tests");

    step("Package test: the wheel in a fresh venv (Debian's python3: sqlite3 and apsw)");
    let py = scratch.join("python");
    std::fs::create_dir_all(&py)?;
    run(Command::new("/usr/bin/python3").args(["-m", "venv"]).arg(py.join("venv")))?;
    run(Command::new(py.join("venv/bin/pip")).args(["install", "-q"]).arg(&p.wheel).arg("apsw"))?;
    std::fs::copy(tests.join("sync_python.py"), py.join("sync_python.py"))?;
    let out = Command::new(py.join("venv/bin/python"))
        .arg("sync_python.py")
        .args([&url, &key])
        .arg(&py)
        .current_dir(&py)
        .output()?;
    // It reports each host on standard error.
    let said = format!("{}{}", String::from_utf8_lossy(&out.stderr), String::from_utf8_lossy(&out.stdout));
    print!("{said}");
    ensure!(out.status.success(), "the wheel's sync failed");
    // Debian's Python loads extensions: both hosts must have run, not only apsw.
    for host in ["sync_python: sqlite3", "sync_python: apsw"] {
        ensure!(said.contains(host), "the wheel's test did not run {host}");
    }

    step("Package test: the npm package in a fresh folder (better-sqlite3@12)");
    let js = scratch.join("node");
    std::fs::create_dir_all(&js)?;
    std::fs::write(js.join("package.json"), r#"{"name":"cloudsync-package-test","version":"1.0.0","private":true}"#)?;
    run(Command::new("npm")
        .args(["install", "--silent", "--no-audit", "--no-fund"])
        .arg(&p.npm)
        .arg("better-sqlite3@12")
        .current_dir(&js))?;
    std::fs::copy(tests.join("sync_node.cjs"), js.join("sync_node.cjs"))?;
    run(Command::new("node").arg("sync_node.cjs").args([&url, &key]).arg(&js).current_dir(&js))?;

    step("Package test: the JVM example through Maven (xerial sqlite-jdbc from Debian's repository)");
    crate::jvm::run_example(&p.dir.join("jvm-example"), &p.extension, &url, &key, &scratch.join("jvm"))?;

    drop(node);
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}
