//! An instant Pub/Sub stand-in for load runs: answers every publish with 200 at once, so a
//! benchmark can measure the edge without the emulator's cost. Usage: `pubsub-sink PORT`.

use std::io::Read;

fn main() {
    let port: u16 = match std::env::args().nth(1).map(|p| p.parse()) {
        Some(Ok(port)) => port,
        _ => {
            eprintln!("usage: pubsub-sink PORT");
            std::process::exit(2);
        }
    };
    let server = match tiny_http::Server::http(("127.0.0.1", port)) {
        Ok(server) => std::sync::Arc::new(server),
        Err(e) => {
            eprintln!("pubsub-sink: cannot listen on {port}: {e}");
            std::process::exit(1);
        }
    };
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let server = std::sync::Arc::clone(&server);
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let _ = std::io::copy(&mut request.as_reader().take(2 << 20), &mut std::io::sink());
                    let _ = request.respond(tiny_http::Response::from_string(r#"{"messageIds":["1"]}"#));
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
}
