//! A TCP proxy that can cut a dependency off and bring it back, with its state intact (an
//! emulator restart would lose every topic and subscription, which real outages do not).

#![allow(clippy::unwrap_used, reason = "test code: a panic is the failure report")]

use std::io::copy;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Forwards `127.0.0.1:port` to an upstream while up; refuses (closes) connections while down.
pub struct ChaosProxy {
    down: Arc<AtomicBool>,
    /// Open client connections: a cut closes them too (clients pool connections).
    open: Arc<Mutex<Vec<TcpStream>>>,
    /// `127.0.0.1:port`, to give clients instead of the upstream.
    pub host: String,
}

impl ChaosProxy {
    /// Starts forwarding to `upstream` (`host:port`).
    pub fn start(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let host = listener.local_addr().unwrap().to_string();
        let down = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        let (flag, upstream, tracked) = (Arc::clone(&down), upstream.to_owned(), Arc::clone(&open));
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if flag.load(Ordering::SeqCst) {
                    let _ = client.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(server) = TcpStream::connect(&upstream) else { continue };
                tracked.lock().unwrap().push(client.try_clone().unwrap());
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                std::thread::spawn(move || {
                    let _ = copy(&mut c_read, &mut s_write);
                    let _ = s_write.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(Shutdown::Write);
                });
            }
        });
        Self { down, open, host }
    }

    /// Cuts the dependency off: new connections are closed at once.
    pub fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        for connection in self.open.lock().unwrap().drain(..) {
            let _ = connection.shutdown(Shutdown::Both);
        }
    }

    /// Brings it back.
    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }
}
