//! The JVM example (`packaging/jvm`), compiled by Maven and run, resolving xerial
//! sqlite-jdbc and Maven's plugins from Debian's repository (`/usr/share/maven-repo`),
//! offline: this machine cannot reach the Maven repository, and Debian packages every
//! piece the example needs (`docs/packaging.md`).

use std::path::Path;
use std::process::Command;

use anyhow::Result;

use crate::sys::{apt_install, run};

/// Debian's Maven repository.
const REPO: &str = "/usr/share/maven-repo";
/// Debian's sqlite-jdbc (it links the system's SQLite, 3.40 on Debian 12).
const SQLITE_JDBC: &str = "/usr/share/java/sqlite-jdbc.jar";

/// Installs Maven, a JDK, sqlite-jdbc and the plugins the example's `pom.xml` names,
/// from Debian, when any is missing (`junit5` provides a BOM the compiler plugin's
/// dependencies import).
fn ensure() -> Result<()> {
    let needed = [
        ("/usr/bin/mvn", "maven"),
        ("/usr/bin/javac", "openjdk-17-jdk-headless"),
        (SQLITE_JDBC, "libxerial-sqlite-jdbc-java"),
        ("/usr/share/maven-repo/org/apache/maven/plugins/maven-resources-plugin", "libmaven-resources-plugin-java"),
        ("/usr/share/maven-repo/org/apache/maven/plugins/maven-compiler-plugin", "libmaven-compiler-plugin-java"),
        ("/usr/share/maven-repo/org/codehaus/mojo/exec-maven-plugin", "libexec-maven-plugin-java"),
        ("/usr/share/maven-repo/org/junit/junit-bom", "junit5"),
    ];
    let missing: Vec<&str> = needed.iter().filter(|(p, _)| !Path::new(p).exists()).map(|(_, pkg)| *pkg).collect();
    if missing.is_empty() {
        return Ok(());
    }
    crate::sys::step(&format!("Installing Debian packages for the JVM example: {}", missing.join(" ")));
    apt_install(&missing)
}

/// Copies the example to `work`, then compiles and runs it with Maven (offline) against
/// `url` with `key`, loading `extension`.
pub fn run_example(project: &Path, extension: &Path, url: &str, key: &str, work: &Path) -> Result<()> {
    ensure()?;
    let copy = work.join("project");
    crate::package::copy_dir(project, &copy)?;
    let dbs = work.join("dbs");
    std::fs::create_dir_all(&dbs)?;
    // `exec:java` runs the class in Maven's JVM with the project's classpath (Debian's
    // sqlite-jdbc); none of the arguments holds a space.
    let args = format!("{} {url} {key} {}", extension.display(), dbs.display());
    run(Command::new("mvn")
        .args(["-o", "-B", "-q", &format!("-Dmaven.repo.local={REPO}"), "compile", "exec:java"])
        .arg(format!("-Dexec.args={args}"))
        .current_dir(&copy))
}
