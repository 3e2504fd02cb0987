//! Stopping: SIGTERM or SIGINT ends the agent at once with status 0 and changes nothing in the
//! kernel (routes, the tunnel, nftables and BIRD stay as they are, so traffic keeps flowing),
//! as systemd's stop, kubelet's pod termination or Ctrl-C expect. Without a handler, the agent
//! as a container's PID 1 would ignore SIGTERM (the kernel drops signals PID 1 has no handler
//! for) and be killed only after the grace period.
//!
//! The handler writes one line and calls `_exit`, both async-signal-safe: nothing is left to
//! undo, so there is nothing to unwind. No signal is blocked, so BIRD and any other child
//! starts with the default dispositions (exec resets handlers) and gets its own SIGTERM.

use std::io;

const SAID_TERM: &[u8] =
    b"podnet-agent: stopping on SIGTERM: routes, tunnel, nftables and BIRD stay as they are\n";
const SAID_INT: &[u8] =
    b"podnet-agent: stopping on SIGINT: routes, tunnel, nftables and BIRD stay as they are\n";

extern "C" fn on_signal(signal: libc::c_int) {
    let said = if signal == libc::SIGINT {
        SAID_INT
    } else {
        SAID_TERM
    };
    // SAFETY: write(2) and _exit(2) are async-signal-safe; the buffer is a static.
    unsafe {
        libc::write(2, said.as_ptr().cast(), said.len());
        libc::_exit(0);
    }
}

/// Installs the handler for SIGTERM and SIGINT.
pub fn exit_on_signals() -> io::Result<()> {
    for signal in [libc::SIGTERM, libc::SIGINT] {
        // SAFETY: a zeroed sigaction with only the handler set and an empty mask is valid;
        // the handler only calls async-signal-safe functions.
        let rc = unsafe {
            let mut action = std::mem::zeroed::<libc::sigaction>();
            action.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
