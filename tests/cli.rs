//! The `pantau` binary as a user runs it.

use std::process::Command;

fn pantau() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pantau"))
}

fn repo(path: &str) -> String {
    format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn shipped_configs_are_valid() {
    for file in [
        "config/demo.toml",
        "config/example.toml",
        "config/fleet.toml",
    ] {
        let out = pantau()
            .args(["check-config", &repo(file)])
            // config/fleet.toml takes its database from the environment.
            .env(
                "PANTAU_DATABASE_URL",
                "host=127.0.0.1 user=postgres dbname=pantau",
            )
            .output()
            .expect("runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": OK."), "{stdout}");
    }
}

#[test]
fn check_config_lists_every_problem_and_fails() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("bad.toml");
    std::fs::write(
        &file,
        "[ingest]\nanalysis_fps = 500\n\n[[cameras]]\nid = \"a\"\nurl = \"rtsp://admin:hunter2@10.0.0.1/x\"\n\n\
         [[cameras]]\nid = \"a\"\nurl = \"rtps://10.0.0.2/x\"\n\n[[cameras]]\nid = \"c\"\nurl = \"file:///no/such.mp4\"\n",
    )
    .expect("write");
    let out = pantau()
        .args(["check-config", file.to_str().expect("utf-8 path")])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "4 problems in the configuration",
        "ingest.analysis_fps: 500 fps is out of range",
        "cameras[1].id: camera id \"a\" is used twice",
        "cameras[1].url: scheme \"rtps\" is not rtsp, rtsps, file or test",
        "cameras[2].url: cannot read /no/such.mp4",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    assert!(!stderr.contains("hunter2"), "password leaked:\n{stderr}");
}

#[test]
fn check_config_summary_redacts_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("ok.toml");
    std::fs::write(
        &file,
        "[[cameras]]\nid = \"gate\"\nurl = \"rtsp://admin:hunter2@10.0.0.1:554/live\"\n",
    )
    .expect("write");
    let out = pantau()
        .args(["check-config", file.to_str().expect("utf-8 path")])
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("rtsp://admin:***@10.0.0.1:554/live"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"));
}

#[test]
fn unreadable_or_malformed_files_name_the_file() {
    let out = pantau()
        .args(["check-config", "/no/such/pantau.toml"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot read config file /no/such/pantau.toml"));

    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("typo.toml");
    std::fs::write(
        &file,
        "[[cameras]]\nid = \"a\"\nurl = \"test://ball\"\nanalysis_fsp = 5\n",
    )
    .expect("write");
    let out = pantau()
        .args(["check-config", file.to_str().expect("utf-8 path")])
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("unknown field `analysis_fsp`"), "{stderr}");
    assert!(stderr.contains("line 4"), "{stderr}");
}

/// `pantau demo` serves the bundled clips over RTSP and ingests them: every camera streams.
#[test]
fn demo_streams_every_bundled_clip() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("demo.toml");
    let text = std::fs::read_to_string(repo("config/demo.toml"))
        .expect("demo config")
        .replace("127.0.0.1:8554", &format!("127.0.0.1:{port}"))
        + "\n[api]\nlisten = \"127.0.0.1:0\"\n";
    std::fs::write(&config, text).expect("write");
    let out = pantau()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "demo",
            "--view",
            "table",
            "--duration-s",
            "10",
            "--rtsp-port",
            &port.to_string(),
        ])
        .arg("--config")
        .arg(&config)
        .env_remove("PANTAU_ADMIN_PASSWORD")
        .output()
        .expect("runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The console's address and a login made for this run.
    let console = stdout
        .lines()
        .find(|l| l.contains("Console: http://127.0.0.1:"))
        .unwrap_or_else(|| panic!("no console line in:\n{stdout}"));
    let password = console.rsplit(" / ").next().unwrap_or_default().trim();
    assert!(console.contains("log in as admin / "), "{console}");
    assert_eq!(password.len(), 16, "{console}");
    // The final table (printed after shutdown): one row per camera, each streamed frames.
    let last_header = stdout.rfind("camera ").expect("a status table");
    let table: Vec<&str> = stdout[last_header..].lines().skip(1).collect();
    for id in ["traffic", "campus", "stadtmitte"] {
        let row = table
            .iter()
            .find(|l| l.starts_with(id))
            .unwrap_or_else(|| panic!("no row for {id} in:\n{stdout}"));
        let decoded: u64 = row
            .split_whitespace()
            .nth(3)
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("cannot read decoded frames in {row:?}"));
        assert!(decoded > 20, "{id} decoded only {decoded} frames: {row}");
    }
}

/// `pantau user add` creates a user in the configured database with an argon2 hash, changes
/// it when run again, and refuses short passwords and a config without [store].
#[test]
fn user_add_creates_and_updates_users() {
    let dir = tempfile::tempdir().expect("tempdir");
    let schema = format!("pantau_cli_users_{}", std::process::id());
    let db = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    let config = dir.path().join("pantau.toml");
    std::fs::write(
        &config,
        format!("[store]\nurl = \"{db}\"\nschema = \"{schema}\"\n"),
    )
    .expect("write");
    let add = |role: &str, password: &str| {
        pantau()
            .args(["user", "add", "rina", "--role", role, "--config"])
            .arg(&config)
            .env("PANTAU_PASSWORD", password)
            .output()
            .expect("runs")
    };
    let out = add("planner", "a long enough passphrase");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("user rina created with role planner"));
    let out = add("dispatcher", "another long passphrase");
    assert!(String::from_utf8_lossy(&out.stdout).contains("user rina updated: role dispatcher"));
    let out = add("operator", "short");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("10 to 200 characters"));
    let psql = |sql: &str| {
        let out = Command::new("psql")
            .args([
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "test",
                "-Atc",
                sql,
            ])
            .output()
            .expect("psql");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let row = psql(&format!(
        "select role, left(password_hash, 10) from {schema}.users where name = 'rina'"
    ));
    assert_eq!(row, "dispatcher|$argon2id$");
    psql(&format!("drop schema {schema} cascade"));

    let bare = dir.path().join("bare.toml");
    std::fs::write(&bare, "").expect("write");
    let out = pantau()
        .args(["user", "add", "rina", "--role", "admin", "--config"])
        .arg(&bare)
        .env("PANTAU_PASSWORD", "a long enough passphrase")
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("configure [store] first"));
}

/// `pantau evidence verify` on a sealed clip folder and its zip export: exit 0 and "VERIFIED"
/// as written with the node's key, 2 without a key, exit 1 naming the failed check after one
/// byte changes or with another key.
#[test]
fn evidence_verify_passes_untouched_clips_and_fails_changed_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (key, _) =
        pantau_evidence::NodeKey::load_or_create(&dir.path().join("node.key")).expect("key");
    let clip = dir.path().join("cam/2026-12-01/01KB0000000000000000000000");
    std::fs::create_dir_all(&clip).expect("mkdir");
    // Any bytes stand for the video here: verification hashes, it does not decode.
    std::fs::write(clip.join("clip.mp4"), vec![7u8; 10_000]).expect("write");
    let now = std::time::SystemTime::now();
    pantau_evidence::seal(
        &clip,
        &pantau_evidence::ClipFacts {
            clip_id: "01KB0000000000000000000000".into(),
            event_id: "01KB0000000000000000000000".into(),
            events: vec!["01KB0000000000000000000000".into()],
            event_kind: "wrong_way".into(),
            rule: "eastbound".into(),
            camera: "cam".into(),
            camera_name: "Simpang Lima".into(),
            site: "lubuklinggau".into(),
            node: "polres-1".into(),
            requested: (now, now),
            start: now,
            end: now,
            codec: "H.264".into(),
            size: Some((1280, 720)),
            frames: 300,
        },
        &key,
    )
    .expect("seal");
    let zip = dir.path().join("export.zip");
    let out = std::fs::File::create(&zip).expect("create");
    pantau_evidence::export::write_zip(&clip, &key, out).expect("zip");
    let verify = |path: &std::path::Path, key: Option<&str>| {
        let mut cmd = pantau();
        cmd.args(["evidence", "verify"]).arg(path);
        if let Some(k) = key {
            cmd.args(["--key", k]);
        }
        let out = cmd.output().expect("runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let public = key.public_base64();
    for path in [&clip, &zip] {
        let (code, text) = verify(path, Some(&public));
        assert_eq!(code, Some(0), "{text}");
        assert!(
            text.contains("VERIFIED") && text.contains("Simpang Lima"),
            "{text}"
        );
    }
    // Without the node's key the files only prove they belong together: exit 2, not VERIFIED.
    let (code, text) = verify(&zip, None);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("CONSISTENT, NOT VERIFIED"), "{text}");
    let (other, _) =
        pantau_evidence::NodeKey::load_or_create(&dir.path().join("other.key")).expect("key");
    let (code, text) = verify(&zip, Some(&other.public_base64()));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("NOT VERIFIED"), "{text}");
    // One byte of the video, then one byte of the manifest.
    let mp4 = clip.join("clip.mp4");
    let mut bytes = std::fs::read(&mp4).expect("read");
    bytes[5000] ^= 1;
    std::fs::write(&mp4, &bytes).expect("write");
    let (code, text) = verify(&clip, Some(&public));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the video was changed"), "{text}");
    bytes[5000] ^= 1;
    std::fs::write(&mp4, &bytes).expect("write");
    let manifest = clip.join("manifest.json");
    let text = std::fs::read_to_string(&manifest).expect("read");
    std::fs::write(
        &manifest,
        text.replace("\"frames\": 300", "\"frames\": 301"),
    )
    .expect("write");
    let (code, text) = verify(&clip, Some(&public));
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("the manifest was changed"), "{text}");
    // Not a clip at all: a clear error, exit 1.
    let junk = dir.path().join("junk.zip");
    std::fs::write(&junk, b"not a zip").expect("write");
    let out = pantau()
        .args(["evidence", "verify"])
        .arg(&junk)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("neither a clip folder nor a zip export"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
