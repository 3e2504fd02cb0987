//! `/healthz` (the process answers), `/readyz` (the first reconcile has succeeded; in BGP mode
//! also BIRD answering with every session Established) and
//! `/metrics` (Prometheus text) on the metrics address, loopback by default.

use crate::metrics::Metrics;
use crate::Error;
use std::net::SocketAddr;
use std::sync::Arc;

/// Binds now (so a taken port fails start-up) and serves on a background thread.
pub fn serve(addr: SocketAddr, metrics: Arc<Metrics>) -> Result<(), Error> {
    let server = tiny_http::Server::http(addr).map_err(|e| Error::Io {
        action: "listen for health and metrics on",
        path: addr.to_string(),
        source: std::io::Error::other(e.to_string()),
    })?;
    std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            for request in server.incoming_requests() {
                let (code, body) = match request.url() {
                    "/healthz" => (200, "ok\n".to_string()),
                    "/readyz" => match metrics.readiness() {
                        Ok(()) => (200, "ready\n".to_string()),
                        Err(why) => (503, format!("not ready: {why}\n")),
                    },
                    "/metrics" => (200, metrics.render()),
                    _ => (404, "not found\n".to_string()),
                };
                let _ =
                    request.respond(tiny_http::Response::from_string(body).with_status_code(code));
            }
        })
        .map_err(|source| Error::Io {
            action: "start the HTTP thread for",
            path: addr.to_string(),
            source,
        })?;
    Ok(())
}
