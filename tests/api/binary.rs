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
