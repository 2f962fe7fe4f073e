//! Keyboard input for the interactive mode: the terminal in raw mode (no canonical line
//! editing, no echo) while the monitor runs, and waiting for input with a timeout.
//!
//! Standard input that is not a terminal (a pipe, a file) is read as it is, byte by byte, so
//! the interactive mode can be driven by a script or a test.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

const STDIN: RawFd = 0;

/// While alive, standard input (if it is a terminal) is in raw mode; restored when dropped.
pub struct RawTerminal {
    saved: Option<libc::termios>,
}

impl RawTerminal {
    /// Switches standard input to raw mode if it is a terminal; does nothing otherwise.
    pub fn enable() -> RawTerminal {
        // SAFETY: isatty only inspects the descriptor.
        if unsafe { libc::isatty(STDIN) } != 1 {
            return RawTerminal { saved: None };
        }
        // SAFETY: termios is a plain C struct; all-zero is a valid value to be overwritten.
        let mut t: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: `t` is a valid, writable termios.
        if unsafe { libc::tcgetattr(STDIN, &mut t) } != 0 {
            return RawTerminal { saved: None };
        }
        let saved = t;
        t.c_lflag &= !(libc::ICANON | libc::ECHO);
        t.c_cc[libc::VMIN] = 1;
        t.c_cc[libc::VTIME] = 0;
        // SAFETY: `t` is a valid termios obtained from tcgetattr and modified field-wise.
        if unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &t) } != 0 {
            return RawTerminal { saved: None };
        }
        RawTerminal { saved: Some(saved) }
    }

    /// Whether standard input is a terminal that was switched to raw mode.
    pub fn is_raw(&self) -> bool {
        self.saved.is_some()
    }
}

impl Drop for RawTerminal {
    fn drop(&mut self) {
        if let Some(t) = self.saved.take() {
            // SAFETY: restores the termios read from this descriptor in `enable`.
            unsafe { libc::tcsetattr(STDIN, libc::TCSANOW, &t) };
        }
    }
}

/// What [`wait_for_input`] saw.
#[derive(Debug, PartialEq, Eq)]
pub enum Input {
    /// Bytes read (at least one).
    Bytes(Vec<u8>),
    /// Standard input is at its end (closed pipe, end of file).
    Eof,
    /// Nothing arrived within the timeout.
    Timeout,
}

/// Waits up to `timeout` for standard input to become readable, then reads what is there.
pub fn wait_for_input(timeout: Duration) -> io::Result<Input> {
    let mut pfd = libc::pollfd {
        fd: STDIN,
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one valid pollfd and nfds is 1.
    let n = unsafe { libc::poll(&mut pfd, 1, ms) };
    if n < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            return Ok(Input::Timeout);
        }
        return Err(e);
    }
    if n == 0 {
        return Ok(Input::Timeout);
    }
    if pfd.revents & (libc::POLLIN | libc::POLLHUP | libc::POLLERR) == 0 {
        return Ok(Input::Timeout);
    }
    let mut buf = [0u8; 64];
    // SAFETY: `buf` is valid for writes of its length.
    let r = unsafe { libc::read(STDIN, buf.as_mut_ptr().cast(), buf.len()) };
    match r {
        0 => Ok(Input::Eof),
        r if r < 0 => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted || e.kind() == io::ErrorKind::WouldBlock {
                Ok(Input::Timeout)
            } else {
                Err(e)
            }
        }
        r => Ok(Input::Bytes(buf[..r as usize].to_vec())),
    }
}
