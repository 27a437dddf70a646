//! The README's quick start, run verbatim: every ```` ```sh ```` block between the
//! `quickstart` markers, in order, as one bash script from the repository's root, so
//! the README can never drift from what works.
//!
//! Only the environment is arranged: `cargo install` installs into a scratch root whose
//! `bin` leads `PATH` (a developer's `~/.cargo/bin` is left alone), and the script runs
//! in its own process group, killed afterwards whatever happened.

use std::process::Command;

use anyhow::{bail, ensure, Context, Result};

use crate::sys::{root, step};

const BEGIN: &str = "<!-- quickstart:begin";
const END: &str = "<!-- quickstart:end -->";

/// The quick start's shell blocks, joined.
pub fn script(readme: &str) -> Result<String> {
    let (Some(a), Some(b)) = (readme.find(BEGIN), readme.find(END)) else {
        bail!("README.md has no quickstart markers")
    };
    let mut out = String::new();
    let mut in_block = false;
    for line in readme[a..b].lines() {
        match (in_block, line.trim_end()) {
            (false, "```sh") => in_block = true,
            (true, "```") => in_block = false,
            (true, l) => {
                out.push_str(l);
                out.push('\n');
            }
            _ => {}
        }
    }
    ensure!(!in_block && !out.is_empty(), "the README's quick start has no complete ```sh block");
    Ok(out)
}

/// Runs the quick start; it must end with both devices' notes on the last device.
pub fn test() -> Result<()> {
    step("README quick start, verbatim");
    let readme = std::fs::read_to_string(root().join("README.md"))?;
    let script = script(&readme)?;
    let scratch = std::env::temp_dir().join(format!("cloudsync-readme-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let path = std::env::var("PATH").unwrap_or_default();
    // `setsid`: the script and everything it starts form one process group, whose id
    // is the child's pid, stopped below whatever the script did.
    // Output goes to files, not pipes: a node left running would hold a pipe open.
    let (out_file, err_file) = (scratch.join("stdout"), scratch.join("stderr"));
    let mut child = Command::new("setsid")
        .args(["bash", "-euo", "pipefail", "-c", &script])
        .current_dir(root())
        .env("CARGO_INSTALL_ROOT", &scratch)
        .env("PATH", format!("{}:{path}", scratch.join("bin").display()))
        .env("TMPDIR", &scratch)
        .stdout(std::fs::File::create(&out_file)?)
        .stderr(std::fs::File::create(&err_file)?)
        .spawn()
        .context("cannot run bash")?;
    let group = child.id();
    let status = child.wait()?;
    let _ =
        Command::new("kill").args(["-TERM", "--", &format!("-{group}")]).stderr(std::process::Stdio::null()).status();
    let stdout = std::fs::read_to_string(&out_file).unwrap_or_default();
    let stderr = std::fs::read_to_string(&err_file).unwrap_or_default();
    println!("{stdout}");
    if !status.success() {
        bail!("the README's quick start failed ({status}):\n{stderr}");
    }
    for note in ["written on the phone", "written on the laptop"] {
        ensure!(stdout.contains(note), "the quick start's last device lacks '{note}':\n{stdout}\n{stderr}");
    }
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quick_start_is_found_and_only_its_sh_blocks() {
        let readme =
            "x\n```sh\nno\n```\n<!-- quickstart:begin (tested) -->\n```sh\na\n```\ntext\n```python\nno\n```\n```sh\nb\n```\n<!-- quickstart:end -->\n";
        assert_eq!(script(readme).unwrap(), "a\nb\n");
        let real = std::fs::read_to_string(root().join("README.md")).unwrap();
        assert!(script(&real).unwrap().contains("cloudsync serve"));
    }
}
