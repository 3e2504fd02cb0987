//! Waiting for SQLite's write lock: short, jittered sleeps up to the busy timeout.
//!
//! SQLite's own busy handler sleeps 1, 2, 5 ... then 100 ms at a time. With dozens of processes
//! queueing for the lock (a hundred agents starting, many CNI calls at once) a waiter often
//! sleeps long past the moment the lock was free. This handler polls every 0.2-2 ms instead.

use rusqlite::Connection;
use std::cell::Cell;
use std::os::raw::{c_int, c_void};
use std::time::{Duration, Instant};

/// The handler's state; must outlive the connection it is installed on.
pub(crate) struct BusyState {
    timeout: Duration,
    started: Cell<Option<Instant>>,
}

/// A connection with its busy handler (dropped after the connection, field order).
pub(crate) struct Conn {
    pub(crate) conn: Connection,
    _busy: Box<BusyState>,
}

impl std::ops::Deref for Conn {
    type Target = Connection;
    fn deref(&self) -> &Connection {
        &self.conn
    }
}

impl Conn {
    /// Installs the handler with `timeout` on `conn`.
    pub(crate) fn new(conn: Connection, timeout: Duration) -> Conn {
        let busy = Box::new(BusyState {
            timeout,
            started: Cell::new(None),
        });
        // SAFETY: the state is boxed (stable address) and lives in the returned Conn, which
        // drops the connection first; the callback only reads it on the connection's thread.
        unsafe {
            rusqlite::ffi::sqlite3_busy_handler(
                conn.handle(),
                Some(on_busy),
                &*busy as *const BusyState as *mut c_void,
            );
        }
        Conn { conn, _busy: busy }
    }
}

extern "C" fn on_busy(state: *mut c_void, count: c_int) -> c_int {
    // SAFETY: registered with a pointer to a live BusyState (see Conn::new).
    let state = unsafe { &*(state as *const BusyState) };
    if count == 0 {
        state.started.set(Some(Instant::now()));
    }
    let waited = state.started.get().map_or(Duration::ZERO, |s| s.elapsed());
    if waited >= state.timeout {
        return 0;
    }
    let jitter = u64::from(Instant::now().elapsed().subsec_nanos() ^ std::process::id()) % 300;
    let micros = 200 + (count.max(0) as u64 * 100).min(1800) + jitter;
    std::thread::sleep(Duration::from_micros(micros).min(state.timeout - waited));
    1
}
