//! `sluice flow-run ls | head` must end the command quietly once `head`
//! closes the pipe, as it does for other Unix tools, not with a panic
//! message: `println!` panics on a closed stdout, so the panic hook turns
//! exactly that panic into the exit a `SIGPIPE` would give (status 141).
//! Long-running commands (server, worker, serve) never install it: their
//! output goes through writers that ignore a closed pipe.

/// The status a shell reports for a process ended by `SIGPIPE`.
const CLOSED_PIPE_STATUS: i32 = 128 + 13;

/// Ends the process quietly when printing to a closed stdout fails.
pub fn exit_quietly_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload_as_str().is_some_and(is_closed_stdout) {
            std::process::exit(CLOSED_PIPE_STATUS);
        }
        default(info);
    }));
}

/// Whether a panic message is `println!`'s on a stdout nobody reads any more.
fn is_closed_stdout(message: &str) -> bool {
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_broken_stdout_pipe_is_quiet() {
        assert!(is_closed_stdout("failed printing to stdout: Broken pipe (os error 32)"));
        assert!(!is_closed_stdout("failed printing to stderr: Broken pipe (os error 32)"));
        assert!(!is_closed_stdout("failed printing to stdout: No space left on device (os error 28)"));
        assert!(!is_closed_stdout("index out of bounds"));
    }
}
