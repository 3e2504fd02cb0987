//! Progress for long steps: a bar on a terminal, a few plain lines otherwise.

use std::io::{IsTerminal, Write};

pub struct Progress {
    what: String,
    total: usize,
    done: usize,
    tty: bool,
    last_line: usize,
}

impl Progress {
    pub fn new(what: &str, total: usize) -> Progress {
        Progress {
            what: what.into(),
            total,
            done: 0,
            tty: std::io::stderr().is_terminal(),
            last_line: 0,
        }
    }

    pub fn step(&mut self) {
        self.done += 1;
        if self.tty {
            let width = 30;
            let filled = width * self.done / self.total.max(1);
            eprint!(
                "\r{:<18} [{}{}] {}/{}",
                self.what,
                "=".repeat(filled),
                " ".repeat(width - filled),
                self.done,
                self.total
            );
            let _ = std::io::stderr().flush();
            if self.done == self.total {
                eprintln!();
            }
        } else {
            // Plain lines at every quarter (and the end).
            let quarter = (self.done * 4) / self.total.max(1);
            if quarter > self.last_line || self.done == self.total {
                self.last_line = quarter;
                eprintln!("{}: {}/{}", self.what, self.done, self.total);
            }
        }
    }
}
