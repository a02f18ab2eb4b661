//! An HTTP counter on loopback for guests granted `127.0.0.1`: each task
//! hits `GET /hit/KEY`, so what ran (and how often) is seen from the
//! guest's side, not from the host's records.
#![allow(dead_code)] // each test binary uses what it needs of it

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};

/// An HTTP counter on loopback: `GET /hit/KEY` answers how many times KEY was hit.
pub struct Counter {
    /// `http://127.0.0.1:PORT`, for the guest.
    pub url: String,
    /// `127.0.0.1:PORT`, for `--allow-host`.
    pub grant: String,
    hits: Arc<Mutex<HashMap<String, u64>>>,
}

impl Counter {
    /// Starts serving on a free port, a thread per connection.
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let hits: Arc<Mutex<HashMap<String, u64>>> = Arc::default();
        let shared = hits.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let hits = shared.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(&stream);
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).is_err() {
                        return;
                    }
                    let mut line = String::new();
                    while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                        line.clear();
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("");
                    let body = match path.strip_prefix("/hit/") {
                        Some(key) => {
                            let mut hits = hits.lock().unwrap();
                            let count = hits.entry(key.to_string()).or_insert(0);
                            *count += 1;
                            count.to_string()
                        }
                        None => "0".to_string(),
                    };
                    let answer =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len());
                    let _ = (&stream).write_all(answer.as_bytes());
                });
            }
        });
        Self { url: format!("http://{address}"), grant: address.to_string(), hits }
    }

    /// How many times `key` was hit.
    pub fn count(&self, key: &str) -> u64 {
        self.hits.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    /// Hits of every key.
    pub fn total(&self) -> u64 {
        self.hits.lock().unwrap().values().sum()
    }
}
