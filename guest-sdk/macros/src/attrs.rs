//! Parsing the arguments of `#[flow(...)]` and `#[task(...)]`.

use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Lit, MetaNameValue, Token};

/// The options of a flow or task, with the SDK's defaults.
#[derive(Default)]
pub struct Options {
    pub name: Option<String>,
    pub retries: u32,
    pub retry_delay_ms: u64,
    pub backoff: f64,
    pub jitter: f64,
    pub timeout_ms: Option<u64>,
    pub cache: bool,
    pub cache_expiration_ms: Option<u64>,
}

impl Options {
    pub fn parse(attr: proc_macro2::TokenStream, task: bool) -> syn::Result<Self> {
        let mut options = Options { backoff: 1.0, ..Options::default() };
        let args = Punctuated::<MetaNameValue, Token![,]>::parse_terminated.parse2(attr)?;
        for arg in args {
            let key = arg.path.get_ident().map(|i| i.to_string()).unwrap_or_default();
            let value = &arg.value;
            match key.as_str() {
                "name" => options.name = Some(string(value)?),
                "retries" if task => options.retries = int(value)?,
                "retry_delay" if task => options.retry_delay_ms = duration_ms(value)?,
                "backoff" if task => options.backoff = float(value)?,
                "jitter" if task => options.jitter = float(value)?,
                "timeout" if task => options.timeout_ms = Some(duration_ms(value)?),
                "cache" if task => options.cache = boolean(value)?,
                "cache_expiration" if task => options.cache_expiration_ms = Some(duration_ms(value)?),
                _ => {
                    let allowed = if task {
                        "name, retries, retry_delay, backoff, jitter, timeout, cache, cache_expiration"
                    } else {
                        "name"
                    };
                    return Err(syn::Error::new_spanned(
                        &arg.path,
                        format!("unknown option; expected one of: {allowed}"),
                    ));
                }
            }
        }
        if !(0.0..=1.0).contains(&options.jitter) {
            return Err(syn::Error::new(proc_macro2::Span::call_site(), "jitter must be between 0.0 and 1.0"));
        }
        if options.backoff < 1.0 {
            return Err(syn::Error::new(proc_macro2::Span::call_site(), "backoff must be at least 1.0"));
        }
        Ok(options)
    }
}

fn lit(value: &Expr) -> syn::Result<&Lit> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => Ok(lit),
        other => Err(syn::Error::new_spanned(other, "expected a literal")),
    }
}

fn string(value: &Expr) -> syn::Result<String> {
    match lit(value)? {
        Lit::Str(s) => Ok(s.value()),
        other => Err(syn::Error::new_spanned(other, "expected a string")),
    }
}

fn int<T: std::str::FromStr>(value: &Expr) -> syn::Result<T>
where
    T::Err: std::fmt::Display,
{
    match lit(value)? {
        Lit::Int(i) => i.base10_parse(),
        other => Err(syn::Error::new_spanned(other, "expected an integer")),
    }
}

fn float(value: &Expr) -> syn::Result<f64> {
    match lit(value)? {
        Lit::Float(f) => f.base10_parse(),
        Lit::Int(i) => i.base10_parse(),
        other => Err(syn::Error::new_spanned(other, "expected a number")),
    }
}

fn boolean(value: &Expr) -> syn::Result<bool> {
    match lit(value)? {
        Lit::Bool(b) => Ok(b.value),
        other => Err(syn::Error::new_spanned(other, "expected true or false")),
    }
}

/// `"250ms"`, `"1.5s"`, `"2m"`, `"1h"`, or an integer number of milliseconds.
fn duration_ms(value: &Expr) -> syn::Result<u64> {
    let text = match lit(value)? {
        Lit::Int(i) => return i.base10_parse(),
        Lit::Str(s) => s.value(),
        other => return Err(syn::Error::new_spanned(other, "expected a duration such as \"1s\"")),
    };
    parse_duration_ms(&text).ok_or_else(|| {
        syn::Error::new_spanned(
            value,
            format!("`{text}` is not a duration; write for example \"250ms\", \"1s\", \"2m\" or \"1h\""),
        )
    })
}

fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1.0,
        "s" => 1_000.0,
        "m" | "min" => 60_000.0,
        "h" => 3_600_000.0,
        _ => return None,
    };
    Some((number * scale).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("1.5s"), Some(1500));
        assert_eq!(parse_duration_ms("2m"), Some(120_000));
        assert_eq!(parse_duration_ms("1h"), Some(3_600_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("3 days"), None);
    }
}
