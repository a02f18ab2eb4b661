//! `#[flow]` and `#[task]`: turn a plain Rust function into a Sluice flow or
//! task. The function's body is kept for the instance that runs it; its name
//! becomes a call through the host (a task run or a subflow run), and a
//! hidden module of the same name holds its input type, its definition for
//! `describe`, and `submit`/`map` for tasks.

mod attrs;
mod expand;

use proc_macro::TokenStream;

/// Marks a flow: `#[flow]` or `#[flow(name = "other-name")]`.
///
/// Parameters must be `serde` + `schemars::JsonSchema` types; their schema is
/// what `describe` exports. `#[default(expr)]` on a parameter gives it a
/// default value; `Option<T>` parameters may be left out.
#[proc_macro_attribute]
pub fn flow(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(expand::Kind::Flow, attr.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}

/// Marks a task: `#[task(retries = 2, retry_delay = "1s", backoff = 2.0,
/// jitter = 0.1, timeout = "10s", cache = true, cache_expiration = "1h")]`.
///
/// Durations are strings such as `"250ms"`, `"1s"`, `"2m"` or `"1h"`.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::expand(expand::Kind::Task, attr.into(), item.into()).unwrap_or_else(syn::Error::into_compile_error).into()
}
