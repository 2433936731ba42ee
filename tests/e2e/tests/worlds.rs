//! Each built component targets its world in `wit/`: it imports nothing the world does not name, and
//! exports what the world says (the check of `wasm-tools component targets`).

use e2e::{component_wasm, workspace_root, COMPONENTS};
use wit_parser::Resolve;

fn check(component: &str, world: &str) -> anyhow::Result<()> {
    let mut resolve = Resolve::default();
    let (package, _) = resolve.push_dir(workspace_root().join("wit"))?;
    let world = resolve.select_world(&[package], Some(world))?;
    let wasm = std::fs::read(component_wasm(component)?)?;
    wit_component::targets(&resolve, world, &wasm, false)
}

#[test]
fn every_component_targets_its_own_world() {
    for (component, _) in COMPONENTS {
        if let Err(e) = check(component, component) {
            panic!("{component} does not target its world: {e:#}");
        }
    }
}

#[test]
fn the_check_tells_worlds_apart() {
    // An HTTP component does not export the cron entry point, and the cron component exports no HTTP
    // handler: if these passed, the check above would prove nothing.
    assert!(check("webhook", "cron").is_err());
    assert!(check("cron", "webhook").is_err());
}
