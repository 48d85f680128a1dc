//! systemd service notification (`Type=notify`): READY once the pipeline is loaded, WATCHDOG
//! pings while frames flow, STOPPING at shutdown. Without `NOTIFY_SOCKET` (not under systemd)
//! every call does nothing.
//!
//! The protocol (a datagram to the `NOTIFY_SOCKET` path, one `KEY=value` per line) is the
//! `sd-notify` crate's; this module decides when to send what. sd-notify 0.5 only connects to
//! socket paths, so an abstract `@name` (which systemd also uses, e.g. in containers) is sent
//! to here, in the same format.

use sd_notify::NotifyState;
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

/// Sends state changes to systemd when it asked for them.
pub struct Notifier {
    /// `WATCHDOG_USEC` (and `WATCHDOG_PID`, when set, naming this process).
    watchdog: Option<Duration>,
    last_ping: Option<Instant>,
}

impl Notifier {
    /// Reads `WATCHDOG_USEC` from the environment; `NOTIFY_SOCKET` is read at each
    /// notification by `sd-notify` (unset: nothing is sent).
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: sd_notify::watchdog_enabled().filter(|d| !d.is_zero()),
            last_ping: None,
        }
    }

    fn send(&self, states: &[NotifyState]) {
        let result = match std::env::var_os("NOTIFY_SOCKET") {
            Some(socket) if socket.as_bytes().starts_with(b"@") => {
                notify_abstract(&socket.as_bytes()[1..], states)
            }
            _ => sd_notify::notify(states),
        };
        if let Err(e) = result {
            let what: Vec<String> = states.iter().map(|s| s.to_string()).collect();
            log::warn!(
                "cannot notify systemd ({}) through NOTIFY_SOCKET {:?}: {e}",
                what.join(", "),
                std::env::var_os("NOTIFY_SOCKET").unwrap_or_default()
            );
        }
    }

    pub fn ready(&self, status: &str) {
        self.send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    pub fn stopping(&self) {
        self.send(&[NotifyState::Stopping]);
    }

    /// Pings the watchdog when half its interval has passed since the last ping. Called once
    /// per processed frame or camera retry, so a hung pipeline stops the pings.
    pub fn alive(&mut self, now: Instant) {
        if self.ping_due(now) {
            self.send(&[NotifyState::Watchdog]);
        }
    }

    /// Whether a watchdog ping is due at `now` (and if so, it counts as sent).
    fn ping_due(&mut self, now: Instant) -> bool {
        let Some(interval) = self.watchdog else {
            return false;
        };
        if self
            .last_ping
            .is_none_or(|last| now.duration_since(last) >= interval / 2)
        {
            self.last_ping = Some(now);
            return true;
        }
        false
    }
}

/// What `sd_notify::notify` does, for an abstract socket name: each state on its own line, in
/// one datagram.
fn notify_abstract(name: &[u8], states: &[NotifyState]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let message: String = states.iter().map(|s| format!("{s}\n")).collect();
    let addr = SocketAddr::from_abstract_name(name)?;
    UnixDatagram::unbound()?.send_to_addr(message.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_pings_at_half_its_interval_and_only_when_asked_for() {
        let mut notifier = Notifier {
            watchdog: Some(Duration::from_secs(10)),
            last_ping: None,
        };
        let t0 = Instant::now();
        assert!(notifier.ping_due(t0), "the first ping goes at once");
        assert!(!notifier.ping_due(t0 + Duration::from_secs(1)), "too soon");
        assert!(!notifier.ping_due(t0 + Duration::from_millis(4999)));
        assert!(notifier.ping_due(t0 + Duration::from_secs(5)));
        assert!(!notifier.ping_due(t0 + Duration::from_secs(6)));
        assert!(notifier.ping_due(t0 + Duration::from_secs(11)));

        let mut without = Notifier {
            watchdog: None,
            last_ping: None,
        };
        assert!(!without.ping_due(t0));
        assert!(!without.ping_due(t0 + Duration::from_secs(3600)));
    }
}
