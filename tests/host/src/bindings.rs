//! Host bindings generated from the repo's `wit/`: the Spin interfaces the app's components import, and
//! the spin-trigger-cron export.

/// `fermyon:spin/variables@2.0.0`, `wasi:keyvalue/{store,atomics}@0.2.0-draft2`, `spin:sqlite@3.0.0`.
pub(crate) mod platform {
    wasmtime::component::bindgen!({
        path: "../../wit",
        inline: "
            package spin-test-host:host;

            world platform {
                import fermyon:spin/variables@2.0.0;
                import wasi:keyvalue/store@0.2.0-draft2;
                import wasi:keyvalue/atomics@0.2.0-draft2;
                import spin:sqlite/sqlite@3.0.0;
            }
        ",
        imports: { default: async | trappable },
        with: {
            "wasi:keyvalue/store.bucket": crate::key_value::Bucket,
            "wasi:keyvalue/atomics.cas": crate::key_value::Cas,
            "spin:sqlite/sqlite.connection": crate::sqlite::Connection,
        },
    });
}

/// The `handle-cron-event` export of `fermyon:spin-cron@2.0.0`.
pub(crate) mod cron {
    wasmtime::component::bindgen!({
        path: "../../wit",
        world: "fermyon:spin-cron/spin-cron@2.0.0",
        exports: { default: async },
    });
}
