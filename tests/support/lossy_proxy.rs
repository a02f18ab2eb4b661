//! A TCP proxy on 127.0.0.1 that loses one answer: it forwards everything
//! between its clients and a server, except that the first response to a
//! request whose head contains a given text, and which itself contains
//! another, never reaches the client (the proxy closes that connection once
//! the server has answered). The server
//! did the work; the client only sees its connection drop, as when a server
//! dies between committing a request and answering it.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Starts the proxy in front of `server`, losing the first answer that
/// contains `answer` to a request that contains `request`; returns its address.
pub fn lose_one_answer(server: SocketAddr, request: &'static str, answer: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a port for the proxy");
    let address = listener.local_addr().unwrap();
    let lost = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming().map_while(Result::ok) {
            let Ok(upstream) = TcpStream::connect(server) else { continue };
            // Set on this connection when the request to lose the answer of goes by.
            let doomed = Arc::new(AtomicBool::new(false));
            let (mut from_client, mut to_server) = (client.try_clone().unwrap(), upstream.try_clone().unwrap());
            let (lost_up, doomed_up) = (lost.clone(), doomed.clone());
            std::thread::spawn(move || {
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = from_client.read(&mut buffer) {
                    let chunk = &buffer[..read];
                    if !lost_up.load(Ordering::SeqCst) && String::from_utf8_lossy(chunk).contains(request) {
                        doomed_up.store(true, Ordering::SeqCst);
                    }
                    if to_server.write_all(chunk).is_err() {
                        break;
                    }
                }
                let _ = to_server.shutdown(Shutdown::Write);
            });
            let (mut from_server, mut to_client) = (upstream, client);
            let lost = lost.clone();
            std::thread::spawn(move || {
                let mut buffer = vec![0; 64 * 1024];
                while let Ok(read @ 1..) = from_server.read(&mut buffer) {
                    if doomed.swap(false, Ordering::SeqCst)
                        && String::from_utf8_lossy(&buffer[..read]).contains(answer)
                        && !lost.swap(true, Ordering::SeqCst)
                    {
                        let _ = to_client.shutdown(Shutdown::Both);
                        let _ = from_server.shutdown(Shutdown::Both);
                        return;
                    }
                    if to_client.write_all(&buffer[..read]).is_err() {
                        break;
                    }
                }
                let _ = to_client.shutdown(Shutdown::Write);
            });
        }
    });
    address
}
