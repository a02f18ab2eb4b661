//! Guest bindings generated from the repository's one `wit/` folder, so the
//! SDK and the host cannot drift apart.
#![allow(missing_docs, clippy::all)]

wit_bindgen::generate!({
    path: "../../wit",
    world: "sluice:flow/flow",
    pub_export_macro: true,
    export_macro_name: "__export_flow_world",
    default_bindings_module: "::sluice_sdk::bindings",
});
