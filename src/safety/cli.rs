//! `containd breakers`: the circuit breakers of a running containd, through its telemetry
//! endpoint (`telemetry.listen`). The counts live in the daemon, so this asks it:
//! `GET /breakers` lists them, `POST /breakers/reset?name=…` closes them, authorised by the
//! bearer token in `[safety] admin_token_file` (read here, sent, never printed).

use super::breakers::View;
use crate::cli::{rfc3339, say, table};
use crate::config::Settings;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// How long the daemon may take to answer.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The largest answer read.
const MAX_ANSWER: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("telemetry.listen: not set, so containd serves no /breakers endpoint")]
    Disabled,
    #[error("safety.admin_token_file: not set, so containd accepts no reset over HTTP (a breaker closes after its cooldown, or on restart)")]
    NoToken,
    #[error("safety.admin_token_file: {}: {why}", path.display())]
    TokenFile { path: PathBuf, why: String },
    #[error("cannot reach containd at {url}: {source}; is it running, with this config's telemetry.listen?")]
    Unreachable { url: String, source: ureq::Error },
    #[error(
        "{url}: containd refused the token (401): its safety.admin_token_file holds another one"
    )]
    Unauthorized { url: String },
    #[error(
        "{url}: containd has no admin token configured (403), so it accepts no reset over HTTP"
    )]
    Forbidden { url: String },
    #[error("{url}: not found (404): this containd serves no circuit breakers endpoint")]
    NotServed { url: String },
    #[error("{url}: containd answered HTTP {status}: {body}")]
    Status {
        url: String,
        status: u16,
        body: String,
    },
    #[error("{url}: cannot read the answer: {source}")]
    Read { url: String, source: ureq::Error },
    #[error("{url}: unexpected answer: {source}")]
    Answer {
        url: String,
        source: serde_json::Error,
    },
}

impl crate::cli::Failure for Error {
    fn is_config(&self) -> bool {
        matches!(
            self,
            Self::Disabled | Self::NoToken | Self::TokenFile { .. }
        )
    }
}

/// `containd breakers list`: every breaker that counted a command, as a table or (`json`)
/// the daemon's JSON array.
pub fn list(settings: &Settings, json: bool) -> Result<(), Error> {
    let url = format!("{}/breakers", base_url(settings)?);
    let response = agent()
        .get(&url)
        .call()
        .map_err(|source| unreachable(&url, source))?;
    let body = answer(&url, response)?;
    let views: Vec<View> =
        serde_json::from_str(&body).map_err(|source| Error::Answer { url, source })?;
    if json {
        say!(
            "{}",
            serde_json::to_string_pretty(&views).unwrap_or_default()
        );
    } else if views.is_empty() {
        say!("no circuit breaker has counted a command since containd started");
    } else {
        say!("{}", render(&views));
    }
    Ok(())
}

/// `containd breakers reset NAME`: closes the breakers named `name` (a spec name closes
/// each of its values; `name:value` one) and restarts their counts.
pub fn reset(settings: &Settings, name: &str) -> Result<(), Error> {
    let token = token(settings)?;
    let url = format!("{}/breakers/reset", base_url(settings)?);
    let response = agent()
        .post(&url)
        .query("name", name)
        .header("Authorization", format!("Bearer {token}"))
        .send_empty()
        .map_err(|source| unreachable(&url, source))?;
    let body = answer(&url, response)?;
    #[derive(serde::Deserialize)]
    struct Reset {
        closed: usize,
    }
    let Reset { closed } =
        serde_json::from_str(&body).map_err(|source| Error::Answer { url, source })?;
    match closed {
        0 => say!("reset {name:?}: no open breaker matched; counts restarted for any that did"),
        n => say!("reset {name:?}: {n} open breaker(s) closed, counts restarted"),
    }
    Ok(())
}

/// The breakers as a table, one row each.
pub fn render(views: &[View]) -> String {
    let rows: Vec<Vec<String>> = views
        .iter()
        .map(|v| {
            let per = humantime::format_duration(Duration::from_secs(v.per_secs));
            vec![
                v.breaker.clone(),
                if v.open { "open" } else { "closed" }.into(),
                format!("{}/{} per {per}", v.count, v.max),
                v.closes_at.map_or_else(|| "-".into(), rfc3339),
                v.held.to_string(),
            ]
        })
        .collect();
    table(&["BREAKER", "STATE", "COUNT", "CLOSES AT", "HELD"], &rows)
}

/// The daemon's telemetry address as a URL; a wildcard listen address is asked on loopback.
pub fn base_url(settings: &Settings) -> Result<String, Error> {
    let mut addr = settings.telemetry.listen.ok_or(Error::Disabled)?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => Ipv4Addr::LOCALHOST.into(),
            IpAddr::V6(_) => Ipv6Addr::LOCALHOST.into(),
        });
    }
    Ok(format!("http://{addr}"))
}

/// The admin token to send: the token file read as the daemon reads it.
fn token(settings: &Settings) -> Result<String, Error> {
    let path = settings
        .safety
        .admin_token_file
        .as_ref()
        .ok_or(Error::NoToken)?;
    read_token(path).map_err(|why| Error::TokenFile {
        path: path.clone(),
        why,
    })
}

/// The token in an admin token file: its text, trimmed, with the length rule of a key
/// ([`crate::approvals::read_key`]). The daemon checks resets against it and this command
/// sends it, so the two can never read one file differently.
pub fn read_token(path: &Path) -> Result<String, String> {
    let bytes = crate::approvals::read_key(path)?;
    match String::from_utf8_lossy(&bytes).trim() {
        "" => Err("holds only whitespace".into()),
        token => Ok(token.to_string()),
    }
}

/// Statuses are answers to interpret here, not transport errors.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(TIMEOUT))
        .http_status_as_error(false)
        .build()
        .new_agent()
}

fn unreachable(url: &str, source: ureq::Error) -> Error {
    Error::Unreachable {
        url: url.into(),
        source,
    }
}

/// The body of a successful answer; any other status as what it means here.
fn answer(url: &str, mut response: ureq::http::Response<ureq::Body>) -> Result<String, Error> {
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER)
        .read_to_string()
        .map_err(|source| Error::Read {
            url: url.into(),
            source,
        });
    let url = url.to_string();
    match status {
        200..=299 => body,
        401 => Err(Error::Unauthorized { url }),
        403 => Err(Error::Forbidden { url }),
        404 => Err(Error::NotServed { url }),
        status => Err(Error::Status {
            url,
            status,
            body: body.unwrap_or_default().chars().take(200).collect(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn settings(extra: &str) -> Settings {
        let text = format!("[input]\ntopics = [\"s\"]\n[rules]\ndir = \"r\"\n{extra}");
        crate::config::parse(std::path::Path::new("c.toml"), &text).unwrap()
    }

    /// Answers one request with `status` and `body`; returns the address and the request.
    fn serve_once(status: &str, body: &str) -> (String, std::thread::JoinHandle<String>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 1024];
            while !request.ends_with(b"\r\n\r\n") {
                let n = stream.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            stream.write_all(response.as_bytes()).unwrap();
            String::from_utf8_lossy(&request).into_owned()
        });
        (addr, server)
    }

    fn view(breaker: &str, open: bool) -> View {
        View {
            breaker: breaker.into(),
            max: 10,
            per_secs: 60,
            count: if open { 10 } else { 3 },
            open,
            opened_at: open.then_some(0),
            closes_at: open.then_some(300_000),
            held: if open { 4 } else { 0 },
        }
    }

    #[test]
    fn renders_a_row_per_breaker() {
        let text = render(&[view("per_rule:r1", true), view("per_target:aws", false)]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("BREAKER") && lines[0].ends_with("HELD"));
        assert!(lines[1].contains("open") && lines[1].contains("10/10 per 1m"));
        assert!(lines[1].contains("1970-01-01T00:05:00Z") && lines[1].ends_with('4'));
        assert!(lines[2].contains("closed") && lines[2].contains("3/10 per 1m"));
    }

    #[test]
    fn a_wildcard_listen_address_is_asked_on_loopback() {
        let any = settings("[telemetry]\nlisten = \"0.0.0.0:9464\"\n");
        assert_eq!(base_url(&any).unwrap(), "http://127.0.0.1:9464");
        let v6 = settings("[telemetry]\nlisten = \"[::]:9464\"\n");
        assert_eq!(base_url(&v6).unwrap(), "http://[::1]:9464");
    }

    #[test]
    fn missing_settings_are_config_errors() {
        use crate::cli::Failure;
        let off = settings("[telemetry]\n");
        let mut off = off;
        off.telemetry.listen = None;
        assert!(matches!(base_url(&off), Err(Error::Disabled)));
        let e = token(&settings("")).unwrap_err();
        assert!(matches!(e, Error::NoToken) && e.is_config());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "short\n").unwrap();
        let short = settings(&format!("[safety]\nadmin_token_file = {:?}\n", path));
        let e = token(&short).unwrap_err();
        assert!(matches!(e, Error::TokenFile { .. }) && e.is_config(), "{e}");
        std::fs::write(&path, format!("{}\n", " ".repeat(20))).unwrap();
        assert!(read_token(&path).unwrap_err().contains("whitespace"));
    }

    #[test]
    fn reset_sends_the_trimmed_token_and_reads_the_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-0123456789abcdef\n").unwrap();
        let (addr, server) = serve_once("200 OK", r#"{"closed":2}"#);
        let s = settings(&format!(
            "[telemetry]\nlisten = \"{addr}\"\n[safety]\nadmin_token_file = {:?}\n",
            path
        ));
        reset(&s, "per_rule:r 1").unwrap();
        let request = server.join().unwrap();
        assert!(
            request.starts_with("POST /breakers/reset?name=per_rule%3Ar%201 "),
            "{request}"
        );
        assert!(request
            .to_ascii_lowercase()
            .contains("authorization: bearer s3cret-0123456789abcdef\r\n"));
    }

    #[test]
    fn refusals_say_what_they_mean_without_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret-0123456789abcdef").unwrap();
        for (status, want) in [
            ("401 Unauthorized", "refused the token"),
            ("403 Forbidden", "no admin token"),
        ] {
            let (addr, server) = serve_once(status, "");
            let s = settings(&format!(
                "[telemetry]\nlisten = \"{addr}\"\n[safety]\nadmin_token_file = {:?}\n",
                path
            ));
            let e = reset(&s, "per_rule").unwrap_err().to_string();
            server.join().unwrap();
            assert!(e.contains(want) && !e.contains("s3cret"), "{e}");
        }
    }

    #[test]
    fn lists_the_daemons_breakers() {
        let body = serde_json::to_string(&[view("per_rule:r1", true)]).unwrap();
        let (addr, server) = serve_once("200 OK", &body);
        let s = settings(&format!("[telemetry]\nlisten = \"{addr}\"\n"));
        list(&s, false).unwrap();
        assert!(server.join().unwrap().starts_with("GET /breakers "));
    }

    #[test]
    fn an_unreachable_daemon_is_said_so() {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let s = settings(&format!("[telemetry]\nlisten = \"{addr}\"\n"));
        let e = list(&s, false).unwrap_err();
        assert!(matches!(e, Error::Unreachable { .. }), "{e}");
    }
}
