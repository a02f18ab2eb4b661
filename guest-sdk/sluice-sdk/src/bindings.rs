//! Guest bindings generated from the repository's `wit/v0.2/` (the newest
//! version of `sluice:flow`, which the host runs beside 0.1.0), so the SDK
//! and the host cannot drift apart.
#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: "../../wit/v0.2",
    world: "sluice:flow/flow",
    pub_export_macro: true,
    export_macro_name: "__export_flow_world",
    default_bindings_module: "::sluice_sdk::bindings",
});
