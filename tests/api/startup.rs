//! First start, restarts and the server-key check.

use brightchat::Config;

use crate::common::test_database_url;

#[tokio::test]
async fn first_start_creates_the_data_dir_key_and_database() {
    if test_database_url().is_some() {
        eprintln!("skipped on PostgreSQL: this test is about the SQLite data dir");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("nested").join("data");
    brightchat::build(Config::with_data_dir(&data_dir))
        .await
        .expect("first start");
    assert!(data_dir.join("brightchat.db").exists());
    let key = data_dir.join("server.key");
    assert!(key.exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A restart keeps the key and migrates nothing twice.
    let before = std::fs::read_to_string(&key).expect("key");
    brightchat::build(Config::with_data_dir(&data_dir))
        .await
        .expect("restart");
    assert_eq!(std::fs::read_to_string(&key).expect("key"), before);
}

#[tokio::test]
async fn a_different_server_key_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = Config::with_data_dir(dir.path().join("data"));
    let server = crate::common::TestServer::start_with(|c| {
        c.server_key_hex = Some(hex::encode([0x11u8; 32]).into());
        // Another node on the same database (with a data dir of its own: one embedded
        // search index per process).
        config.database_url = Some(c.effective_database_url());
    })
    .await;
    let ada = server.member("Ada").await;
    drop(ada);

    // Same database, another key: the start is refused with a clear reason.
    config.server_key_hex = Some(hex::encode([0x22u8; 32]).into());
    let err = match brightchat::build(config.clone()).await {
        Ok(_) => panic!("a node with another key must not start"),
        Err(err) => err.to_string(),
    };
    assert!(err.contains("server key"), "{err}");

    // The right key starts fine.
    config.server_key_hex = Some(hex::encode([0x11u8; 32]).into());
    brightchat::build(config).await.expect("same key starts");
}
