//! An HTTP load balancer in front of several backend instances, as Cloud Run's front end is:
//! each request goes to the next instance in turn; an instance that refuses the connection is
//! skipped; a request cut off mid-way (its instance was killed) is answered 502, so Pub/Sub
//! delivers it again, as it would in production.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// The balancer: `url` takes the pushes.
pub struct Balancer {
    /// `http://127.0.0.1:port`.
    pub url: String,
    /// Requests answered 502 because their instance went away.
    pub cut_off: Arc<AtomicUsize>,
}

impl Balancer {
    /// Balances over `upstreams` (base URLs).
    pub fn start(upstreams: Vec<String>) -> Self {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}", server.server_addr().to_ip().unwrap());
        let cut_off = Arc::new(AtomicUsize::new(0));
        let next = Arc::new(AtomicUsize::new(0));
        let upstreams = Arc::new(upstreams);
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .connect_timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        for _ in 0..32 {
            let (server, upstreams, next, cut_off, client) =
                (Arc::clone(&server), Arc::clone(&upstreams), Arc::clone(&next), Arc::clone(&cut_off), client.clone());
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = Vec::new();
                    let _ = request.as_reader().read_to_end(&mut body);
                    let first = next.fetch_add(1, Ordering::Relaxed);
                    let mut answer = None;
                    for k in 0..upstreams.len() {
                        let upstream = &upstreams[(first + k) % upstreams.len()];
                        let sent = client
                            .post(format!("{upstream}{}", request.url()))
                            .header("content-type", "application/json")
                            .body(body.clone())
                            .send();
                        match sent {
                            Ok(response) => {
                                let status = response.status().as_u16();
                                answer = Some((status, response.bytes().map(|b| b.to_vec()).unwrap_or_default()));
                                break;
                            }
                            // Down: try the next instance.
                            Err(e) if e.is_connect() => continue,
                            Err(_) => {
                                cut_off.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                    let (status, bytes) = answer.unwrap_or((502, br#"{"error":{"code":"bad_gateway"}}"#.to_vec()));
                    let _ = request.respond(tiny_http::Response::from_data(bytes).with_status_code(status));
                }
            });
        }
        Self { url, cut_off }
    }
}
