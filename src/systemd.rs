//! systemd service notification (`Type=notify`): READY once the pipeline is loaded, WATCHDOG
//! pings while frames flow, STOPPING at shutdown. Without `NOTIFY_SOCKET` (not under systemd)
//! every call does nothing.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// A connection to systemd's notification socket, if there is one.
pub struct Notifier {
    socket: Option<(UnixDatagram, std::os::unix::net::SocketAddr)>,
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    /// Reads `NOTIFY_SOCKET` and `WATCHDOG_USEC` from the environment.
    pub fn from_env() -> Notifier {
        let socket =
            std::env::var_os("NOTIFY_SOCKET").and_then(|path| connect(&path.to_string_lossy()));
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|&us| us > 0)
            .map(Duration::from_micros);
        Notifier {
            socket,
            watchdog,
            last_ping: None,
        }
    }

    fn send(&self, state: &str) {
        if let Some((socket, addr)) = &self.socket {
            if let Err(e) = socket.send_to_addr(state.as_bytes(), addr) {
                log::warn!("cannot notify systemd ({state}): {e}");
            }
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&format!("READY=1\nSTATUS={status}"));
    }

    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    /// Pings the watchdog when half its interval has passed since the last ping. Called once
    /// per processed frame or camera retry, so a hung pipeline stops the pings.
    pub fn alive(&mut self, now: Instant) {
        let Some(interval) = self.watchdog else {
            return;
        };
        if self
            .last_ping
            .is_none_or(|last| now.duration_since(last) >= interval / 2)
        {
            self.send("WATCHDOG=1");
            self.last_ping = Some(now);
        }
    }
}

/// `/run/...` paths, or `@name` for an abstract socket.
fn connect(path: &str) -> Option<(UnixDatagram, std::os::unix::net::SocketAddr)> {
    use std::os::linux::net::SocketAddrExt;
    let addr = match path.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).ok()?,
        None => std::os::unix::net::SocketAddr::from_pathname(path).ok()?,
    };
    let socket = UnixDatagram::unbound().ok()?;
    Some((socket, addr))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_watchdog_and_stopping_reach_the_socket() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener
            .set_read_timeout(Some(Duration::from_secs(2)))
            .unwrap();
        let mut notifier = Notifier {
            socket: connect(&path.to_string_lossy()),
            watchdog: Some(Duration::from_secs(10)),
            last_ping: None,
        };
        let read = || {
            let mut buf = [0u8; 256];
            let n = listener.recv(&mut buf).unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        };
        notifier.ready("3 faces");
        assert_eq!(read(), "READY=1\nSTATUS=3 faces");
        let t0 = Instant::now();
        notifier.alive(t0);
        notifier.alive(t0 + Duration::from_secs(1)); // too soon: no second ping
        notifier.alive(t0 + Duration::from_secs(6));
        assert_eq!(read(), "WATCHDOG=1");
        assert_eq!(read(), "WATCHDOG=1");
        notifier.stopping();
        assert_eq!(read(), "STOPPING=1");
    }

    #[test]
    fn without_systemd_nothing_happens() {
        let mut notifier = Notifier {
            socket: None,
            watchdog: None,
            last_ping: None,
        };
        notifier.ready("x");
        notifier.alive(Instant::now());
        notifier.stopping();
    }
}
