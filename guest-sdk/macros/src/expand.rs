//! The code `#[flow]` and `#[task]` generate.

use crate::attrs::Options;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use syn::{Attribute, Expr, FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

/// Which attribute is being expanded.
#[derive(Clone, Copy, PartialEq)]
pub enum Kind {
    Flow,
    Task,
}

struct Param {
    name: syn::Ident,
    ty: Type,
    default: Option<Expr>,
}

pub fn expand(kind: Kind, attr: TokenStream, item: TokenStream) -> syn::Result<TokenStream> {
    let options = Options::parse(attr, kind == Kind::Task)?;
    let mut function: ItemFn = syn::parse2(item)?;
    check_signature(&function)?;

    let fn_name = function.sig.ident.clone();
    let public_name = options.name.clone().unwrap_or_else(|| fn_name.to_string());
    let description = doc_comment(&function.attrs);
    let params = take_params(&mut function)?;
    let (output_ty, returns_result) = output_type(&function.sig.output);

    let body_name = format_ident!("__sluice_body_{}", fn_name);
    let vis = function.vis.clone();
    let docs: Vec<&Attribute> = function.attrs.iter().filter(|a| a.path().is_ident("doc")).collect();
    let inputs = function.sig.inputs.clone();

    let names: Vec<&syn::Ident> = params.iter().map(|p| &p.name).collect();
    let types: Vec<&Type> = params.iter().map(|p| &p.ty).collect();
    let mut default_fns = Vec::new();
    let fields = params.iter().map(|p| {
        let (name, ty) = (&p.name, &p.ty);
        match &p.default {
            Some(expr) => {
                let default_fn = format_ident!("__default_{}", name);
                let path = default_fn.to_string();
                default_fns.push(quote! { fn #default_fn() -> #ty { #expr } });
                quote! { #[serde(default = #path)] pub #name: #ty }
            }
            None => quote! { pub #name: #ty },
        }
    });
    let fields: Vec<TokenStream> = fields.collect();

    let convert = if returns_result {
        quote! {
            match output {
                Ok(value) => ::sluice_sdk::__private::encode_output(&value),
                Err(err) => Err(::sluice_sdk::Error::from(err).into_run_error()),
            }
        }
    } else {
        quote! { ::sluice_sdk::__private::encode_output(&output) }
    };

    let mut body_fn = function.clone();
    body_fn.sig.ident = body_name.clone();
    body_fn.vis = syn::Visibility::Inherited;
    body_fn.attrs.retain(|a| !a.path().is_ident("doc"));

    let caller = match kind {
        Kind::Task => quote! { call_task },
        Kind::Flow => quote! { call_subflow },
    };
    let definition = match kind {
        Kind::Flow => quote! {
            pub const DEF: ::sluice_sdk::FlowDef = ::sluice_sdk::FlowDef {
                name: #public_name,
                description: #description,
                parameters_schema: ::sluice_sdk::__private::schema_json::<Input>,
                invoke,
            };
        },
        Kind::Task => {
            let Options { retries, retry_delay_ms, backoff, jitter, cache, .. } = options;
            let timeout_ms = option_tokens(options.timeout_ms);
            let cache_expiration_ms = option_tokens(options.cache_expiration_ms);
            let (item_ty, item_pat) = if params.len() == 1 {
                (quote! { #(#types)* }, quote! { #(#names)* })
            } else {
                (quote! { (#(#types),*) }, quote! { (#(#names),*) })
            };
            quote! {
                pub const DEF: ::sluice_sdk::TaskDef = ::sluice_sdk::TaskDef {
                    name: #public_name,
                    description: #description,
                    input_schema: ::sluice_sdk::__private::schema_json::<Input>,
                    policy,
                    invoke,
                };

                fn policy() -> ::sluice_sdk::__private::TaskPolicy {
                    ::sluice_sdk::__private::TaskPolicy {
                        retries: #retries,
                        retry_delay_ms: #retry_delay_ms,
                        backoff: #backoff,
                        jitter: #jitter,
                        timeout_ms: #timeout_ms,
                        cache: #cache,
                        cache_expiration_ms: #cache_expiration_ms,
                    }
                }

                /// Starts this task in its own instance without waiting for it.
                pub fn submit(#(#names: #types),*) -> ::sluice_sdk::TaskFuture<#output_ty> {
                    ::sluice_sdk::__private::submit_task(#public_name, [Input { #(#names),* }])
                        .pop()
                        .expect("one future per input")
                }

                /// Starts one run of this task per item, all in parallel.
                pub fn map(items: impl IntoIterator<Item = #item_ty>) -> Vec<::sluice_sdk::TaskFuture<#output_ty>> {
                    ::sluice_sdk::__private::submit_task(
                        #public_name,
                        items.into_iter().map(|#item_pat| Input { #(#names),* }),
                    )
                }
            }
        }
    };

    Ok(quote! {
        #body_fn

        #(#docs)*
        #vis fn #fn_name(#inputs) -> ::sluice_sdk::Result<#output_ty> {
            ::sluice_sdk::__private::#caller(#public_name, &#fn_name::Input { #(#names),* })
        }

        #[doc(hidden)]
        #[allow(non_snake_case, non_camel_case_types, private_interfaces, dead_code)]
        #vis mod #fn_name {
            #[allow(unused_imports)]
            use super::*;

            #[derive(::sluice_sdk::__private::serde::Serialize, ::sluice_sdk::__private::serde::Deserialize, ::sluice_sdk::__private::schemars::JsonSchema)]
            #[serde(crate = "::sluice_sdk::__private::serde", deny_unknown_fields)]
            #[schemars(crate = "::sluice_sdk::__private::schemars")]
            pub struct Input { #(#fields),* }

            #(#default_fns)*

            #definition

            fn invoke(input: &str) -> ::core::result::Result<String, ::sluice_sdk::__private::RunError> {
                let Input { #(#names),* } = ::sluice_sdk::__private::decode_input(input)?;
                let output = super::#body_name(#(#names),*);
                #convert
            }
        }
    })
}

fn check_signature(function: &ItemFn) -> syn::Result<()> {
    let sig = &function.sig;
    if sig.asyncness.is_some() {
        return Err(syn::Error::new_spanned(sig.asyncness, "flows and tasks are plain functions, not async"));
    }
    if !sig.generics.params.is_empty() {
        return Err(syn::Error::new_spanned(&sig.generics, "flows and tasks cannot be generic"));
    }
    Ok(())
}

/// Reads the parameters and strips `#[default(...)]` from them.
fn take_params(function: &mut ItemFn) -> syn::Result<Vec<Param>> {
    let mut params = Vec::new();
    for input in function.sig.inputs.iter_mut() {
        let FnArg::Typed(typed) = input else {
            return Err(syn::Error::new_spanned(input, "flows and tasks are free functions, not methods"));
        };
        let Pat::Ident(ident) = &*typed.pat else {
            return Err(syn::Error::new_spanned(
                &typed.pat,
                "give each parameter a plain name; it becomes a JSON field",
            ));
        };
        let mut default = None;
        let mut kept = Vec::new();
        for attr in typed.attrs.drain(..) {
            if attr.path().is_ident("default") {
                default = Some(attr.parse_args::<Expr>()?);
            } else {
                kept.push(attr);
            }
        }
        typed.attrs = kept;
        params.push(Param { name: ident.ident.clone(), ty: (*typed.ty).clone(), default });
    }
    Ok(params)
}

/// The value type a call returns, and whether the body returns a `Result`.
fn output_type(output: &ReturnType) -> (Type, bool) {
    let ReturnType::Type(_, ty) = output else {
        return (syn::parse_quote!(()), false);
    };
    if let Type::Path(path) = &**ty
        && let Some(last) = path.path.segments.last()
        && last.ident == "Result"
        && let PathArguments::AngleBracketed(args) = &last.arguments
        && let Some(GenericArgument::Type(ok)) = args.args.first()
    {
        return (ok.clone(), true);
    }
    ((**ty).clone(), false)
}

fn doc_comment(attrs: &[Attribute]) -> String {
    let lines: Vec<String> = attrs
        .iter()
        .filter(|a| a.path().is_ident("doc"))
        .filter_map(|a| match &a.meta {
            syn::Meta::NameValue(nv) => match &nv.value {
                Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => Some(s.value().trim().to_string()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    lines.join("\n").trim().to_string()
}

fn option_tokens(value: Option<u64>) -> TokenStream {
    match value {
        Some(v) => quote! { Some(#v) },
        None => quote! { None },
    }
}
