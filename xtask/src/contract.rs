//! The API contract, checked by a third-party tester: schemathesis (from PyPI) fuzzes
//! every operation of the live server's `/openapi.json` and fails on any 5xx, any
//! undocumented status, any body that violates its schema and any wrong content type.
//! The server runs on its embedded defaults with one real tenant and database, whose
//! ids are given to schemathesis so that requests reach the handlers' logic instead of
//! stopping at `404`.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::sys::{cargo, run, step, tools_dir};

/// The schemathesis release the contract run uses (pinned: a new release may add checks).
const SCHEMATHESIS: &str = "schemathesis==4.32.5";

struct Node(Child);

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn schemathesis_venv() -> Result<PathBuf> {
    let venv = tools_dir().join("schemathesis");
    let st = venv.join("bin/st");
    let current = Command::new(venv.join("bin/pip"))
        .args(["show", "schemathesis"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("Version: {}", &SCHEMATHESIS[14..])));
    if !st.exists() || !current {
        step(&format!("Installing {SCHEMATHESIS} in {}", venv.display()));
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
        run(Command::new(venv.join("bin/pip")).args(["install", "-q", SCHEMATHESIS]))?;
    }
    Ok(st)
}

fn call(agent: &ureq::Agent, url: &str, token: &str, body: Value) -> Result<Value> {
    let mut resp = agent
        .post(url)
        .header("Authorization", &format!("Bearer {token}"))
        .send_json(body)
        .with_context(|| format!("POST {url}"))?;
    resp.body_mut().read_json().context("reading the response")
}

/// Runs schemathesis against a freshly started node.
pub fn schemathesis() -> Result<()> {
    step("API contract: schemathesis against the live server's OpenAPI document");
    let st = schemathesis_venv()?;
    cargo(&["build", "-p", "cloudsync"])?;
    let dir = std::env::temp_dir().join(format!("cloudsync-contract-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    // A token the node accepts: configured tokens must carry 128 bits.
    let mut random = [0u8; 16];
    std::io::Read::read_exact(&mut std::fs::File::open("/dev/urandom")?, &mut random)?;
    let token = format!("csa_contract_{}", random.iter().map(|b| format!("{b:02x}")).collect::<String>());
    // No rate limit and no lockout: the tester sends thousands of requests, wrong
    // credentials among them, from one address (both are tested on their own).
    let mut child = Command::new(crate::sys::target_dir().join("debug/cloudsync"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--rate-limit",
            "0",
            "--quota-requests-per-second",
            "0",
            "--auth-failures-per-minute",
            "0",
        ])
        .args(["--admin-token", &token, "--data-dir"])
        .arg(dir.join("data"))
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .context("starting cloudsync serve")?;
    let stdout = child.stdout.take().context("server stdout")?;
    let node = Node(child);
    let mut lines = BufReader::new(stdout).lines();
    let first = lines.next().context("no output from the server")??;
    let base = first.split("listening on ").nth(1).context("no address in the server's first line")?.trim().to_string();
    std::thread::spawn(move || for _ in lines {});

    let agent =
        ureq::Agent::config_builder().timeout_global(Some(std::time::Duration::from_secs(30))).build().new_agent();
    let tenant = call(&agent, &format!("{base}/v1/tenants"), &token, json!({ "name": "contract" }))?;
    let t = tenant["id"].as_str().context("tenant id")?;
    let db = call(&agent, &format!("{base}/v1/tenants/{t}/databases"), &token, json!({ "name": "main" }))?;
    let d = db["id"].as_str().context("database id")?;
    let key = call(
        &agent,
        &format!("{base}/v1/tenants/{t}/api-keys"),
        &token,
        json!({ "name": "contract", "scopes": ["sync"] }),
    )?;
    let k = key["id"].as_str().context("key id")?;
    std::fs::write(
        dir.join("schemathesis.toml"),
        format!("[parameters]\n\"path.tenant\" = \"{t}\"\n\"path.db\" = \"{d}\"\n\"path.key\" = \"{k}\"\n"),
    )?;
    let status = Command::new(&st)
        .args(["--no-color", "run", &format!("{base}/openapi.json")])
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args(["--max-examples", "30", "--seed", "1", "--phases", "examples,coverage,fuzzing"])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance",
        ])
        .current_dir(&dir)
        .status()
        .context("running schemathesis")?;
    drop(node);
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        bail!("schemathesis found contract violations (see above)");
    }
    Ok(())
}
