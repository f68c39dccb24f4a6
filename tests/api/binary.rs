//! The `brightchat` binary: subcommands and configuration errors.

use std::process::Command;

fn brightchat() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brightchat"));
    for (name, _) in std::env::vars() {
        if name.starts_with("BRIGHTCHAT_") {
            command.env_remove(name);
        }
    }
    command
}

#[test]
fn a_bad_setting_stops_the_start_with_one_line_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (variable, value) in [
        ("BRIGHTCHAT_BIND", "not-an-address"),
        ("BRIGHTCHAT_DATABASE_URL", "mysql://localhost/x"),
        ("BRIGHTCHAT_SERVER_KEY", "1234"),
    ] {
        let output = brightchat()
            .arg("serve")
            .env("BRIGHTCHAT_DATA_DIR", dir.path())
            .env(variable, value)
            .output()
            .expect("run");
        assert!(!output.status.success(), "{variable} should stop the start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(variable), "{stderr}");
    }
}

#[test]
fn openapi_subcommand_prints_the_document() {
    let output = brightchat().arg("openapi").output().expect("run");
    assert!(output.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert!(doc["paths"]["/api/conversations"].is_object());
}

#[test]
fn migrate_subcommand_prepares_the_database() {
    if crate::common::test_database_url().is_some() {
        eprintln!("skipped on PostgreSQL: runs against a SQLite data dir");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let output = brightchat()
        .arg("migrate")
        .env("BRIGHTCHAT_DATA_DIR", dir.path())
        .output()
        .expect("run");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(dir.path().join("brightchat.db").exists());
}

/// A free local port (bound, then released for the child to take).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Stops the child server when the test ends, passing or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_exposes_metrics_only_on_the_metrics_bind() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (public, private) = (free_port(), free_port());
    let _child = Child(
        brightchat()
            .arg("serve")
            .env("BRIGHTCHAT_DATA_DIR", dir.path().join("data"))
            .env("BRIGHTCHAT_PLUGINS_DIR", dir.path().join("plugins"))
            .env("BRIGHTCHAT_BIND", format!("127.0.0.1:{public}"))
            .env("BRIGHTCHAT_METRICS_BIND", format!("127.0.0.1:{private}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("run"),
    );
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..200 {
        if let Ok(answer) = client
            .get(format!("http://127.0.0.1:{public}/healthz"))
            .send()
            .await
            && answer.status() == 200
        {
            ready = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "the server did not start");
    let on_public = client
        .get(format!("http://127.0.0.1:{public}/metrics"))
        .send()
        .await
        .expect("answer");
    assert_eq!(on_public.status(), 404);
    let text = client
        .get(format!("http://127.0.0.1:{private}/metrics"))
        .send()
        .await
        .expect("answer")
        .text()
        .await
        .expect("body");
    assert!(
        text.lines()
            .any(|line| line.starts_with("brightchat_http_requests_total{")
                && line.contains("route=\"/healthz\"")
                && line.contains("status=\"2xx\"")),
        "{text}"
    );
}

#[test]
fn backup_refuses_postgresql_and_names_pg_dump() {
    let output = brightchat()
        .args(["backup", "/tmp/never-written.db"])
        .env(
            "BRIGHTCHAT_DATABASE_URL",
            "postgres://nobody@127.0.0.1:1/none",
        )
        .output()
        .expect("run");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("pg_dump"), "{stderr}");
    assert!(!std::path::Path::new("/tmp/never-written.db").exists());
}

#[tokio::test]
async fn backup_while_serving_restores_readable_messages() {
    use crate::common::{TestServer, decrypt_dm};
    if crate::common::test_database_url().is_some() {
        eprintln!("skipped on PostgreSQL: backs up a SQLite data dir (PostgreSQL: pg_dump)");
        return;
    }
    let server = TestServer::start().await;
    let ada = server.member("Ada").await;
    let bob = server.member("Bob").await;
    let mut conversation = String::new();
    for n in 0..5 {
        let sent = server.dm(&ada, &bob, &format!("before backup {n}")).await;
        conversation = sent["conversationId"].as_str().expect("id").to_owned();
    }
    let target = tempfile::tempdir().expect("tempdir");
    let copy = target.path().join("copy.db");
    // Writes go on while the copy is taken.
    let writing = {
        let (base, token, to) = (server.base.clone(), ada.token.clone(), bob.id);
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            for n in 0..20 {
                let answer = client
                    .post(format!("{base}/api/conversations"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({"recipientId": to, "content": format!("during {n}")}))
                    .send()
                    .await
                    .expect("answer");
                assert_eq!(answer.status(), 201);
            }
        })
    };
    let output = tokio::task::spawn_blocking({
        let (data, copy) = (server.data_dir.clone(), copy.clone());
        move || {
            brightchat()
                .arg("backup")
                .arg(&copy)
                .env("BRIGHTCHAT_DATA_DIR", &data)
                .output()
                .expect("run")
        }
    })
    .await
    .expect("joined");
    writing.await.expect("writes went on");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("SERVER KEY"), "the key reminder: {stderr}");
    assert!(copy.exists());

    // Never over an existing file.
    let again = brightchat()
        .arg("backup")
        .arg(&copy)
        .env("BRIGHTCHAT_DATA_DIR", &server.data_dir)
        .output()
        .expect("run");
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists"));

    // Restore: a new data dir with the server key and the backup as its database.
    let restored = tempfile::tempdir().expect("tempdir");
    let data = restored.path().join("data");
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::copy(server.data_dir.join("server.key"), data.join("server.key")).expect("key");
    std::fs::copy(&copy, data.join("brightchat.db")).expect("db");
    let mut config = server.config.clone();
    config.data_dir = data;
    config.database_url = None;
    config.plugins_dir = restored.path().join("plugins");
    let second = TestServer::start_config(config, restored).await;
    let page = second
        .get(
            &format!("/api/conversations/{conversation}/messages?limit=100"),
            Some(&bob.token),
        )
        .await;
    let items = page.data(200)["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let texts: Vec<String> = items
        .iter()
        .map(|m| decrypt_dm(&bob.secret, &m["encryptedContent"]))
        .collect();
    for n in 0..5 {
        assert!(texts.contains(&format!("before backup {n}")), "{texts:?}");
    }
    // Whatever of the concurrent writes made it in, each decrypts.
    assert!(
        texts
            .iter()
            .all(|t| t.starts_with("before") || t.starts_with("during"))
    );
    // The server reads its own copies with the restored key: the list preview.
    let list = second.get("/api/conversations", Some(&bob.token)).await;
    let preview = list.data(200)["items"][0]["lastMessagePreview"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(texts.contains(&preview), "{preview} is one of {texts:?}");
}
