//! Variables: manifest defaults, `SPIN_VARIABLE_*`, the options map (which wins), templates in component
//! variables, names a component did not map, invalid names, and required variables without a value.

use crate::support::{get, TestApp};

const APP: &str = r#"
spin_manifest_version = 2
[application]
name = "variables"

[variables]
greeting = { default = "hello" }
host_test_from_env = { default = "default" }
host_test_both = { default = "default" }
token = { required = true, secret = true }
unmapped = { default = "invisible" }

[[trigger.http]]
route = "/..."
component = "v"

[component.v]
source = "{probe}"
[component.v.variables]
greeting = "{{ greeting }}"
from_env = "{{ host_test_from_env }}"
both = "{{ host_test_both }}"
combined = "{{greeting}}, {{ token }}!"
literal = "just text"
"#;

async fn variable(base: &str, name: &str) -> (u16, String) {
    get(&format!("{base}/?op=var&name={name}")).await
}

#[tokio::test(flavor = "multi_thread")]
async fn values_come_from_options_then_environment_then_defaults() {
    // Unique names: the process environment is shared by every test of this binary.
    std::env::set_var("SPIN_VARIABLE_HOST_TEST_FROM_ENV", "from-env");
    std::env::set_var("SPIN_VARIABLE_HOST_TEST_BOTH", "from-env");
    let app = TestApp::new(APP);
    let host = app
        .start_with(&[("token", "t0k3n"), ("host_test_both", "from-options")])
        .await
        .expect("starting");
    let base = host.base_url();

    assert_eq!(variable(&base, "greeting").await, (200, "hello".into()));
    assert_eq!(variable(&base, "from_env").await, (200, "from-env".into()));
    assert_eq!(variable(&base, "both").await, (200, "from-options".into()));
    assert_eq!(
        variable(&base, "combined").await,
        (200, "hello, t0k3n!".into())
    );
    assert_eq!(variable(&base, "literal").await, (200, "just text".into()));
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_component_reads_only_the_names_it_maps() {
    let app = TestApp::new(APP);
    let host = app.start_with(&[("token", "x")]).await.expect("starting");
    let base = host.base_url();

    // `unmapped` and `token` are application variables, but the component did not map them by name.
    for name in ["unmapped", "token", "nothing"] {
        let (status, body) = variable(&base, name).await;
        assert_eq!(status, 404, "{name}");
        assert!(body.starts_with("Error::Undefined("), "{name}: {body}");
    }
    let (status, body) = variable(&base, "Not-Valid").await;
    assert_eq!(status, 404);
    assert!(body.starts_with("Error::InvalidName("), "{body}");
    host.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_required_variable_without_a_value_refuses_start() {
    let app = TestApp::new(APP);
    let error = app.start_with(&[]).await.err().expect("start must fail");
    assert!(format!("{error:#}").contains("token"), "{error:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_template_naming_an_unknown_variable_refuses_start() {
    let app = TestApp::new(&APP.replace("\"{{ greeting }}\"", "\"{{ no_such_variable }}\""));
    let error = app
        .start_with(&[("token", "x")])
        .await
        .err()
        .expect("start must fail");
    assert!(
        format!("{error:#}").contains("no_such_variable"),
        "{error:#}"
    );
}
