//! The replay progress bar: on standard error, only when it is a terminal.

use super::ReplayProgress;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

pub struct Bar {
    bar: Option<ProgressBar>,
}

impl Bar {
    /// A bar only when wanted and standard error is a terminal.
    pub fn new(wanted: bool) -> Bar {
        if !wanted || !std::io::stderr().is_terminal() {
            return Bar { bar: None };
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
        Bar { bar: Some(bar) }
    }

    pub fn finish(&mut self) {
        if let Some(b) = self.bar.take() {
            b.finish_and_clear();
        }
    }
}

impl ReplayProgress for Bar {
    fn update(&mut self, bytes: u64, total: Option<u64>, packets: u64) {
        let Some(b) = &self.bar else { return };
        if b.length().is_none() {
            match total {
                Some(t) => {
                    b.set_length(t);
                    b.set_style(
                        ProgressStyle::with_template(
                            "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} ({eta}) {msg}",
                        )
                        .expect("valid template")
                        .progress_chars("=> "),
                    );
                }
                None => b.set_style(
                    ProgressStyle::with_template(
                        "{spinner} [{elapsed_precise}] {bytes} read {msg}",
                    )
                    .expect("valid template"),
                ),
            }
        }
        b.set_position(bytes);
        b.set_message(format!("{packets} packets"));
    }
}
