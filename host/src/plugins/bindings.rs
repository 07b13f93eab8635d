//! Host-side bindings generated from `wit/` (package `easel:plugin@0.1.0`).
//!
//! The processor world's bindings define every `easel:plugin` interface; the router world
//! reuses them, so one set of host implementations (in `host/`) serves every world.

mod processor_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "easel:plugin/processor",
        // Host functions return `wasmtime::Result` so a limit can end the call. Guests run on
        // the async runtime: `models.run` awaits the model scheduler; the rest answer at once.
        imports: {
            "easel:plugin/models.run": async | trappable,
            default: trappable,
        },
        exports: { default: async },
        with: {
            "easel:plugin/images.image": crate::plugins::images::PluginImage,
        },
        require_store_data_send: true,
    });
}

mod router_world {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "easel:plugin/router",
        // The `easel:plugin` interfaces (their async `models.run` included) come from the
        // processor world's bindings.
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "easel:plugin": super::processor_world::easel::plugin,
        },
        require_store_data_send: true,
    });
}

pub(crate) use processor_world::easel;
pub(crate) use processor_world::{Processor, ProcessorPre};
pub(crate) use router_world::RouterPre;
