//! The raw wit-bindgen bindings, one module per world. The processor module defines every
//! `easel:plugin` interface; the others reuse its types so values move between them freely.

/// World `processor` (and the definitions of all `easel:plugin` interfaces).
pub mod processor {
    wit_bindgen::generate!({
        path: "../wit",
        world: "easel:plugin/processor",
        pub_export_macro: true,
        export_macro_name: "export_processor_world",
        default_bindings_module: "easel_sdk::bindings::processor",
        runtime_path: "easel_sdk::__wit_bindgen::rt",
        generate_all,
    });
}

/// World `router`.
pub mod router {
    wit_bindgen::generate!({
        path: "../wit",
        world: "easel:plugin/router",
        pub_export_macro: true,
        export_macro_name: "export_router_world",
        default_bindings_module: "easel_sdk::bindings::router",
        runtime_path: "easel_sdk::__wit_bindgen::rt",
        with: {
            "easel:plugin/types@0.1.0": crate::bindings::processor::easel::plugin::types,
            "easel:plugin/images@0.1.0": crate::bindings::processor::easel::plugin::images,
            "easel:plugin/models@0.1.0": crate::bindings::processor::easel::plugin::models,
            "easel:plugin/log@0.1.0": crate::bindings::processor::easel::plugin::log,
            "easel:plugin/config@0.1.0": crate::bindings::processor::easel::plugin::config,
            "easel:plugin/kv@0.1.0": crate::bindings::processor::easel::plugin::kv,
            "easel:plugin/pipeline@0.1.0": crate::bindings::processor::easel::plugin::pipeline,
        },
    });
}

/// World `endpoint`: implement `exports::wasi::http::incoming_handler::Guest` and export it
/// with `export_endpoint_world!(MyHandler with_types_in easel_sdk::bindings::endpoint)`.
pub mod endpoint {
    wit_bindgen::generate!({
        path: "../wit",
        world: "easel:plugin/endpoint",
        pub_export_macro: true,
        export_macro_name: "export_endpoint_world",
        default_bindings_module: "easel_sdk::bindings::endpoint",
        runtime_path: "easel_sdk::__wit_bindgen::rt",
        with: {
            "easel:plugin/types@0.1.0": crate::bindings::processor::easel::plugin::types,
            "easel:plugin/images@0.1.0": crate::bindings::processor::easel::plugin::images,
            "easel:plugin/models@0.1.0": crate::bindings::processor::easel::plugin::models,
            "easel:plugin/log@0.1.0": crate::bindings::processor::easel::plugin::log,
            "easel:plugin/config@0.1.0": crate::bindings::processor::easel::plugin::config,
            "easel:plugin/kv@0.1.0": crate::bindings::processor::easel::plugin::kv,
        },
        generate_all,
    });
}

/// `wasi:http/outgoing-handler`, for plugins that call out over HTTP. The operator must
/// allow-list the destinations for the tenant (`[plugins.tenants.<id>] allow_hosts`):
/// otherwise a component that imports this is refused at upload, and requests to hosts
/// outside the list fail with `error-code::HTTP-request-denied`. Requests and responses use
/// the endpoint world's `wasi:http/types`.
pub mod outgoing {
    wit_bindgen::generate!({
        inline: "package easel-sdk:outgoing;
                 world outgoing { import wasi:http/outgoing-handler@0.2.12; }",
        path: "../wit",
        runtime_path: "easel_sdk::__wit_bindgen::rt",
        with: {
            "wasi:http/types@0.2.12": crate::bindings::endpoint::wasi::http::types,
            "wasi:io/poll@0.2.12": crate::bindings::endpoint::wasi::io::poll,
            "wasi:io/error@0.2.12": crate::bindings::endpoint::wasi::io::error,
            "wasi:io/streams@0.2.12": crate::bindings::endpoint::wasi::io::streams,
            "wasi:clocks/monotonic-clock@0.2.12": crate::bindings::endpoint::wasi::clocks::monotonic_clock,
        },
        generate_all,
    });
}
