//! What the development stand-ins (`lms-sandbox`, `moodle-sandbox`, `hotmart-fake`) share:
//! listening on loopback and serving requests from a pool of threads.

use std::sync::{Arc, Mutex};
use tiny_http::{Request, Server};

/// Listens on `127.0.0.1:port`, or exits 1 with one line naming the stand-in.
pub fn listen(name: &str, port: u16) -> Arc<Server> {
    match Server::http(("127.0.0.1", port)) {
        Ok(server) => Arc::new(server),
        Err(e) => {
            eprintln!("{name}: cannot listen on port {port}: {e}");
            std::process::exit(1);
        }
    }
}

/// Serves every request with `handle` on `workers` threads, until the process ends. With
/// `exit_with_stdin`, the process ends when its stdin closes: a stand-in started by a test
/// dies with it.
pub fn serve<S: Send + 'static>(
    name: &str,
    server: Arc<Server>,
    state: Arc<Mutex<S>>,
    workers: usize,
    exit_with_stdin: bool,
    handle: fn(&Mutex<S>, Request),
) {
    eprintln!("{name} listening on {}", server.server_addr());
    if exit_with_stdin {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin(), &mut std::io::sink());
            std::process::exit(0);
        });
    }
    let workers: Vec<_> = (0..workers)
        .map(|_| {
            let (server, state) = (Arc::clone(&server), Arc::clone(&state));
            std::thread::spawn(move || {
                for request in server.incoming_requests() {
                    handle(&state, request);
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}
