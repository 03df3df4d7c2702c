//! The two state machines of CPython's `asyncio.sslproto` (3.11+): the TLS session's and the
//! application protocol's. Plain Rust, so that the transition rule has tests of its own.

/// `SSLProtocolState`: where the TLS session is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SslState {
    Unwrapped,
    DoHandshake,
    Wrapped,
    /// Closing: application data still queued is written, incoming data still read.
    Flushing,
    /// close_notify is being exchanged.
    Shutdown,
}

impl SslState {
    /// The member's name in `asyncio.sslproto.SSLProtocolState`.
    pub fn name(self) -> &'static str {
        match self {
            SslState::Unwrapped => "UNWRAPPED",
            SslState::DoHandshake => "DO_HANDSHAKE",
            SslState::Wrapped => "WRAPPED",
            SslState::Flushing => "FLUSHING",
            SslState::Shutdown => "SHUTDOWN",
        }
    }

    /// `SSLProtocol._set_state`'s rule: any state may fall back to UNWRAPPED; otherwise only
    /// one step forward along UNWRAPPED, DO_HANDSHAKE, WRAPPED, FLUSHING, SHUTDOWN.
    pub fn may_become(self, next: SslState) -> bool {
        use SslState::*;
        matches!(
            (self, next),
            (_, Unwrapped)
                | (Unwrapped, DoHandshake)
                | (DoHandshake, Wrapped)
                | (Wrapped, Flushing)
                | (Flushing, Shutdown)
        )
    }

    /// Application data may still be written (`_write_appdata` refuses it in the other states).
    pub fn takes_app_data(self) -> bool {
        matches!(self, SslState::DoHandshake | SslState::Wrapped)
    }

    /// Records are decrypted for the application (`_do_read`).
    pub fn reads_app_data(self) -> bool {
        matches!(self, SslState::Wrapped | SslState::Flushing)
    }
}

/// `AppProtocolState`: which of the application protocol's callbacks have run.
///
/// INIT -connection_made-> CON_MADE [-eof_received-> EOF] -connection_lost-> CON_LOST
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppState {
    Init,
    ConMade,
    Eof,
    ConLost,
}

impl AppState {
    /// The member's name in `asyncio.sslproto.AppProtocolState`.
    pub fn name(self) -> &'static str {
        match self {
            AppState::Init => "STATE_INIT",
            AppState::ConMade => "STATE_CON_MADE",
            AppState::Eof => "STATE_EOF",
            AppState::ConLost => "STATE_CON_LOST",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::SslState::{self, *};

    const ALL: [SslState; 5] = [Unwrapped, DoHandshake, Wrapped, Flushing, Shutdown];

    #[test]
    fn every_state_may_fall_back_to_unwrapped() {
        for state in ALL {
            assert!(state.may_become(Unwrapped), "{state:?}");
        }
    }

    #[test]
    fn the_only_other_moves_are_one_step_forward() {
        let forward = [
            (Unwrapped, DoHandshake),
            (DoHandshake, Wrapped),
            (Wrapped, Flushing),
            (Flushing, Shutdown),
        ];
        for from in ALL {
            for to in ALL {
                let expected = to == Unwrapped || forward.contains(&(from, to));
                assert_eq!(from.may_become(to), expected, "{from:?} -> {to:?}");
            }
        }
    }

    #[test]
    fn app_data_flows_as_sslproto_lets_it() {
        let writable: Vec<_> = ALL.into_iter().filter(|s| s.takes_app_data()).collect();
        assert_eq!(writable, [DoHandshake, Wrapped]);
        let readable: Vec<_> = ALL.into_iter().filter(|s| s.reads_app_data()).collect();
        assert_eq!(readable, [Wrapped, Flushing]);
    }
}
