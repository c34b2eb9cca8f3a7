//! Secured clusters: containd over TLS (a CA and server certificate this test makes), and over
//! SASL_SSL with SCRAM-SHA-512 (a user created on the broker, the password read from a file).
//! A wrong password stops the daemon with exit 78, and no password appears in its output.
//!
//! One test function: the harness's clients take the broker and its security settings from
//! the environment, and each phase has a broker of its own.

mod common;

use common::*;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const PASSWORD: &str = "correct-horse-battery-7f3a";
const WRONG: &str = "wrong-horse-battery-91c2";

struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

/// A CA and a server certificate for 127.0.0.1 / localhost signed by it.
fn make_pki(dir: &Path) -> Pki {
    std::fs::create_dir_all(dir).unwrap();
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "containd test CA");
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.signed_by(&key, &issuer).unwrap();
    let pki = Pki {
        ca: dir.join("ca.pem"),
        cert: dir.join("broker.pem"),
        key: dir.join("broker.key"),
    };
    std::fs::write(&pki.ca, ca_cert.pem()).unwrap();
    std::fs::write(&pki.cert, cert.pem()).unwrap();
    std::fs::write(&pki.key, key.serialize_pem()).unwrap();
    pki
}

/// Points the harness's clients at this broker with these properties.
fn use_broker(port: u16, properties: &[(&str, String)]) {
    std::env::set_var("CONTAIND_TEST_BOOTSTRAP", format!("127.0.0.1:{port}"));
    let joined: Vec<String> = properties.iter().map(|(k, v)| format!("{k}={v}")).collect();
    std::env::set_var("CONTAIND_TEST_CLIENT", joined.join(";"));
}

/// A config for this test's topics with `properties` added to `[kafka]`.
fn config_with(dir: &Path, topics: &Topics, properties: &[(&str, String)]) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let config = write_config(dir, topics, &unique("g"), "");
    let lines: Vec<String> = properties
        .iter()
        .map(|(k, v)| format!("\"{k}\" = \"{v}\""))
        .collect();
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("[kafka]\n", &format!("[kafka]\n{}\n", lines.join("\n")));
    std::fs::write(&config, text).unwrap();
    config
}

/// Sends a policy-change signal (four commands) and waits for its decision and commands.
async fn decides_one_signal(topics: &Topics, daemon: &Daemon) {
    send_policy_change(&topics.signals, "secure-signal").await;
    let mut outputs = vec![topics.decisions.clone()];
    outputs.extend(TARGETS.iter().map(|t| topics.target(t)));
    let records = read_until(&outputs, Duration::from_secs(60), count(5));
    let decided = decisions(&records, topics);
    assert_eq!(decided.len(), 1, "{}", daemon.log_text());
    assert_eq!(commands(&records, topics).len(), 4, "{}", daemon.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_scram_clusters_are_reached_and_a_wrong_password_stops_startup() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let tls_args = [
        "--cert",
        pki.cert.to_str().unwrap(),
        "--key",
        pki.key.to_str().unwrap(),
    ];
    let tls = |protocol: &str| {
        vec![
            ("security.protocol", protocol.to_string()),
            ("ssl.ca.location", pki.ca.display().to_string()),
        ]
    };

    // TLS: the broker serves only TLS; the daemon verifies it against the test's CA.
    let tls_dir = dir.path().join("tls");
    std::fs::create_dir_all(&tls_dir).unwrap();
    let port = free_port();
    let _tls_broker = Broker::start_with(port, &tls_dir, &tls_args);
    use_broker(port, &tls("SSL"));
    let topics = Topics::new(&unique("tls"));
    create_topics(&all_topics(&topics)).await;
    let config = config_with(&tls_dir, &topics, &tls("SSL"));
    let daemon = Daemon::start(&config, "containd.log");
    decides_one_signal(&topics, &daemon).await;
    drop(daemon);
    // A CA that did not sign the broker's certificate: a TLS problem, exit 78.
    let other = make_pki(&dir.path().join("other"));
    let untrusted = config_with(
        &tls_dir.join("untrusted"),
        &topics,
        &[
            ("security.protocol", "SSL".into()),
            ("ssl.ca.location", other.ca.display().to_string()),
        ],
    );
    let (code, said) = check_connect(&untrusted);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("TLS handshake failed"), "{said}");

    // SASL_SSL + SCRAM-SHA-512: users are created on a plaintext start of the same storage.
    let scram_dir = dir.path().join("scram");
    std::fs::create_dir_all(&scram_dir).unwrap();
    let (_scram_broker, port) = scram_broker(&scram_dir, &tls_args);
    let mut sasl = tls("SASL_SSL");
    sasl.push(("sasl.mechanism", "SCRAM-SHA-512".into()));
    sasl.push(("sasl.username", "containd".into()));
    let mut harness = sasl.clone();
    harness.push(("sasl.password", PASSWORD.into()));
    use_broker(port, &harness);
    let topics = Topics::new(&unique("scram"));
    create_topics(&all_topics(&topics)).await;
    let secret = scram_dir.join("kafka-password");
    std::fs::write(&secret, format!("{PASSWORD}\n")).unwrap();
    let mut with_file = sasl.clone();
    with_file.push(("sasl.password_file", secret.display().to_string()));
    let config = config_with(&scram_dir, &topics, &with_file);
    let daemon = Daemon::start(&config, "containd.log");
    decides_one_signal(&topics, &daemon).await;
    let log = daemon.log_text();
    assert!(
        !log.contains(PASSWORD),
        "the password is never logged:\n{log}"
    );
    drop(daemon);

    // A wrong password: a clear error naming the user, exit 78, the password nowhere.
    std::fs::write(&secret, format!("{WRONG}\n")).unwrap();
    a_wrong_password_stops(&config);
}

/// A broker serving TLS and requiring SCRAM-SHA-512, with the user `containd`: created on a
/// plaintext start of the same storage (nisshi's `user create` speaks plaintext only).
fn scram_broker(dir: &Path, tls_args: &[&str]) -> (Broker, u16) {
    let port = free_port();
    let mut setup = Broker::start(port, dir);
    let created = Command::new("nisshi")
        .args([
            "user",
            "create",
            "--broker",
            &format!("tcp://127.0.0.1:{port}"),
        ])
        .args(["--mechanism", "scram512", "containd", PASSWORD])
        .output()
        .unwrap();
    assert!(created.status.success(), "{created:?}");
    setup.kill();
    let mut args = tls_args.to_vec();
    args.push("--authentication");
    (Broker::start_with(port, dir, &args), port)
}

/// `check --connect` before a deployment and the daemon itself both stop with 78, say the
/// login was refused and for whom, and print neither password.
fn a_wrong_password_stops(config: &Path) {
    let (code, said) = check_connect(config);
    assert_eq!(code, Some(78), "{said}");
    assert!(said.contains("authentication failed"), "{said}");
    assert!(!said.contains(WRONG) && !said.contains(PASSWORD), "{said}");
    let mut daemon = Daemon::start(config, "wrong.log");
    let code = daemon.wait_exit(Duration::from_secs(60));
    let log = daemon.log_text();
    assert_eq!(code, Some(78), "exit 78 on a wrong password:\n{log}");
    assert!(
        log.contains("authentication") && log.contains("containd"),
        "says authentication failed and for whom:\n{log}"
    );
    assert!(!log.contains(WRONG) && !log.contains(PASSWORD), "{log}");
}
