//! The web UI's sign-in over plain HTTP against a real `sluice server` on
//! 127.0.0.1 (no browser: a redirect is read, never followed, so nothing
//! leaves loopback): `next` may only name a path of this site, and the
//! session cookie holds a server-side session id, never the token, that
//! ends on sign-out and when the token is revoked, and outlives a restart.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use support::Sluice;
use support::http::request;

/// A response: status, lower-cased head, body.
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.head.lines().find_map(|line| line.strip_prefix(&format!("{name}: ")))
    }
}

fn send(address: &str, method: &str, path: &str, cookie: Option<&str>, form: Option<&str>) -> Answer {
    let mut stream = TcpStream::connect(address).unwrap();
    let cookie = cookie.map(|c| format!("Cookie: sluice_session={c}\r\n")).unwrap_or_default();
    let body = form.unwrap_or("");
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{cookie}Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP response");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status");
    Answer { status, head: head.to_ascii_lowercase(), body: body.to_string() }
}

/// `application/x-www-form-urlencoded` (and query string) encoding of `value`.
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn sign_in(address: &str, token: &str, next: &str) -> Answer {
    send(address, "POST", "/signin", None, Some(&format!("token={}&next={}", encode(token), encode(next))))
}

/// The session id a sign-in set, from its `Set-Cookie`.
fn session_cookie(answer: &Answer) -> String {
    let cookie = answer.header("set-cookie").unwrap_or_else(|| panic!("no cookie set: {}", answer.head));
    cookie.split(';').next().unwrap().strip_prefix("sluice_session=").expect("the session cookie").to_string()
}

fn signed_in(address: &str, cookie: &str) -> bool {
    let answer = send(address, "GET", "/runs", Some(cookie), None);
    match answer.status {
        200 => true,
        303 => {
            assert!(answer.header("location").is_some_and(|l| l.starts_with("/signin")), "{}", answer.head);
            false
        }
        other => panic!("GET /runs answered {other}: {}", answer.body),
    }
}

#[test]
fn next_must_be_a_path_of_this_site_or_the_sign_in_is_refused() {
    let sluice = Sluice::new();
    let (_server, address) = sluice.server(&["--workers", "0"]);
    let token = sluice.admin_token();
    let hostile = [
        "/\t/evil.example",
        "/\n/evil.example",
        "/\r/evil.example",
        "//evil.example",
        "/\\evil.example",
        "\\/evil.example",
        "https://evil.example/",
        "evil.example",
        " /runs",
        "/runs\u{1}",
        "/\u{7f}x",
        "/runs\r\nSet-Cookie: x=1",
        "",
    ];
    for next in hostile {
        let page = send(&address, "GET", &format!("/signin?next={}", encode(next)), None, None);
        assert_eq!(page.status, 400, "GET /signin?next={next:?}: {}", page.body);
        assert!(page.body.contains("must be a path of this site"), "{next:?}: {}", page.body);
        let posted = sign_in(&address, &token, next);
        assert_eq!(posted.status, 400, "POST /signin next={next:?}: {}\n{}", posted.head, posted.body);
        assert!(posted.header("location").is_none(), "{next:?} redirected: {}", posted.head);
        assert!(posted.header("set-cookie").is_none(), "{next:?} signed in anyway: {}", posted.head);
    }
    for next in ["/runs", "/runs?state=Completed", "/deployments/hello/leo", "/"] {
        let page = send(&address, "GET", &format!("/signin?next={}", encode(next)), None, None);
        assert_eq!(page.status, 200, "{next}: {}", page.body);
        let posted = sign_in(&address, &token, next);
        assert_eq!(posted.status, 303, "{next}: {}", posted.body);
        assert_eq!(posted.header("location"), Some(next.to_ascii_lowercase().as_str()), "{}", posted.head);
    }
}

#[test]
fn the_session_cookie_is_a_revocable_server_side_id_not_the_token() {
    let sluice = Sluice::new();
    let (server, address) = sluice.server(&["--workers", "0"]);
    let output = sluice.run(&["token", "create", "--tenant", "default", "--role", "viewer"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let token = String::from_utf8(output.stdout).unwrap().trim().to_string();

    let answer = sign_in(&address, &token, "/runs");
    assert_eq!(answer.status, 303, "{}", answer.body);
    let cookie_line = answer.header("set-cookie").unwrap().to_string();
    let max_age: u64 = cookie_line
        .split(';')
        .find_map(|part| part.trim().strip_prefix("max-age="))
        .and_then(|v| v.parse().ok())
        .expect("a Max-Age");
    assert!(max_age <= 12 * 3600, "a session lasts at most 12 hours, not {max_age} s");
    let id = session_cookie(&answer);
    let secret = token.rsplit('_').next().unwrap();
    assert!(!id.contains(secret) && !id.contains(&hex::encode(&token)), "the cookie carries the token: {id}");
    assert!(!id.contains(&hex::encode(secret)), "the cookie carries the token's secret: {id}");
    assert!(signed_in(&address, &id), "the session works");
    assert!(!signed_in(&address, &format!("{id}0")), "a made-up id does not");

    // Two sessions of one token: signing one out ends that one only.
    let other = session_cookie(&sign_in(&address, &token, "/"));
    assert_ne!(other, id, "each sign-in is a new session");
    let page = send(&address, "GET", "/runs", Some(&other), None);
    let csrf = page.body.split("name=\"_csrf\" value=\"").nth(1).and_then(|rest| rest.split('"').next());
    let csrf = csrf.unwrap_or_else(|| panic!("no CSRF field on /runs: {}", page.body));
    let out = send(&address, "POST", "/signout", Some(&other), Some(&format!("_csrf={csrf}")));
    assert_eq!(out.status, 303, "{}", out.body);
    assert!(!signed_in(&address, &other), "a signed-out session no longer works");
    assert!(signed_in(&address, &id), "the other session of the token still does");

    // Sessions are kept by the server: a restart keeps them.
    drop(server);
    let (_server, address) = sluice.server(&["--workers", "0"]);
    assert!(signed_in(&address, &id), "the session outlives a restart");

    // Revoking the token ends its sessions at once.
    let (_, tokens) = request(&address, "GET", "/api/v1/tokens", None);
    let token_id = token.split('_').nth(1).unwrap();
    assert!(tokens.as_array().unwrap().iter().any(|t| t["id"] == token_id), "{tokens}");
    let (status, answer) = request(&address, "DELETE", &format!("/api/v1/tokens/{token_id}"), None);
    assert_eq!(status, 204, "{answer}");
    assert!(!signed_in(&address, &id), "a revoked token's session no longer works");
}
