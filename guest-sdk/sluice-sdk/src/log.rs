//! Logging to the run's log: `log::info!("Hello {name}!")`.

use crate::bindings::sluice::flow::host;
pub use crate::bindings::sluice::flow::types::LogLevel as Level;

/// Writes one line to the run's log.
pub fn write(level: Level, message: &str) {
    host::log(level, message);
}

#[doc(hidden)]
#[macro_export]
macro_rules! __sluice_log {
    ($level:ident, $($arg:tt)+) => {
        $crate::log::write($crate::log::Level::$level, &::std::format!($($arg)+))
    };
}

/// Logs at `trace` level.
#[macro_export]
macro_rules! __sluice_trace { ($($arg:tt)+) => { $crate::__sluice_log!(Trace, $($arg)+) }; }
/// Logs at `debug` level.
#[macro_export]
macro_rules! __sluice_debug { ($($arg:tt)+) => { $crate::__sluice_log!(Debug, $($arg)+) }; }
/// Logs at `info` level.
#[macro_export]
macro_rules! __sluice_info { ($($arg:tt)+) => { $crate::__sluice_log!(Info, $($arg)+) }; }
/// Logs at `warning` level.
#[macro_export]
macro_rules! __sluice_warn { ($($arg:tt)+) => { $crate::__sluice_log!(Warning, $($arg)+) }; }
/// Logs at `error` level.
#[macro_export]
macro_rules! __sluice_error { ($($arg:tt)+) => { $crate::__sluice_log!(Error, $($arg)+) }; }

pub use crate::{
    __sluice_debug as debug, __sluice_error as error, __sluice_info as info, __sluice_trace as trace,
    __sluice_warn as warn,
};
