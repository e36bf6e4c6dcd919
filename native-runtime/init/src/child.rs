//! The sandbox process's side: run the steps, and tell plugd-init how it went over the error
//! pipe (close-on-exec). Messages are JSON lines: `exec` right before `execve`, or `failed`
//! with the step. plugd-init turns them into a [`Report`]: `exec` then EOF means the exec
//! happened; EOF with no message means the process died (a signal, the OOM killer) before it.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde::{Deserialize, Serialize};

use crate::ctx::Ctx;
use crate::error::{Failure, StepError};
use crate::launch::Report;
use crate::steps;
use crate::sys::Syscall;
use crate::sys::linux::Linux;

/// One message on the error pipe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum ChildMsg {
    /// `execve` comes next.
    Exec,
    /// A step failed; the process exits 127.
    Failed {
        /// `StepError::step`.
        step: String,
        /// `StepError::message`.
        message: String,
    },
}

impl ChildMsg {
    /// The message for a failed step.
    pub fn failed(e: &StepError) -> ChildMsg {
        ChildMsg::Failed {
            step: e.step(),
            message: e.message(),
        }
    }

    /// As one JSON line.
    pub fn line(&self) -> Vec<u8> {
        let mut v = serde_json::to_vec(self).unwrap_or_default();
        v.push(b'\n');
        v
    }
}

/// What plugd-init reports, given everything read from the error pipe until EOF.
pub fn outcome(text: &str) -> Report {
    let mut exec = false;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match serde_json::from_str::<ChildMsg>(line) {
            Ok(ChildMsg::Exec) => exec = true,
            Ok(ChildMsg::Failed { step, message }) => return Report::Failed { step, message },
            Err(_) => {
                let message = format!("unreadable message from the sandbox process: {line:?}");
                return Report::Failed {
                    step: "sandbox process".into(),
                    message,
                };
            }
        }
    }
    match exec {
        true => Report::Running,
        false => Report::Failed {
            step: "sandbox process".into(),
            message: "the sandbox process died before exec without a report".into(),
        },
    }
}

/// Runs every step; a panic becomes a failure of the step list. `Ok` only happens with a test
/// double (a real `execve` does not return on success).
pub fn run(ctx: &mut Ctx, s: &dyn Syscall) -> Result<(), StepError> {
    match catch_unwind(AssertUnwindSafe(|| steps::run_all(ctx, s))) {
        Ok(result) => result,
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            Err(StepError::Died(format!("panic: {what}")))
        }
    }
}

/// The sandbox process's main: run, report a failure, exit 127. Never returns.
pub fn main(mut ctx: Ctx, s: &Linux) -> ! {
    let err = match run(&mut ctx, s) {
        Ok(()) => StepError::Exec(Failure::Refused("execve returned without an error".into())),
        Err(e) => e,
    };
    if let Some(fd) = ctx.sync_fd() {
        // Nothing more can be done if plugd-init is gone too.
        let _ = s.write_fd(fd, &ChildMsg::failed(&err).line());
    }
    s.exit_now(127)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_then_eof_is_running() {
        let text = String::from_utf8(ChildMsg::Exec.line()).unwrap();
        assert_eq!(outcome(&text), Report::Running);
    }

    #[test]
    fn failure_after_exec_marker_is_failed() {
        let err = StepError::Exec(Failure::Sys {
            call: "execve /x".into(),
            errno: nix::errno::Errno::ENOENT,
        });
        let mut text = String::from_utf8(ChildMsg::Exec.line()).unwrap();
        text.push_str(std::str::from_utf8(&ChildMsg::failed(&err).line()).unwrap());
        match outcome(&text) {
            Report::Failed { step, message } => {
                assert_eq!(step, "exec");
                assert!(message.contains("ENOENT"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn eof_without_a_message_is_a_death() {
        assert!(matches!(outcome(""), Report::Failed { step, .. } if step == "sandbox process"));
    }
}
