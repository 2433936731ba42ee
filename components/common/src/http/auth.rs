//! The credentials a route's [`Auth`] asks for, checked by the edge before any handler runs.

use subtle::ConstantTimeEq;

use super::routes::Auth;
use crate::admin::status_page;
use crate::api::{Request, Response};
use crate::configuration::{Secret, Settings};
use crate::platform::Platform;

/// `Err` is the `401` to send when `request` lacks what `auth` asks for. Only the admin token is checked
/// here; a webhook's signature needs keys from the database, so the intake verifies it after the schema
/// check, and Spin keeps private routes private.
pub fn authorize(
    auth: Auth,
    request: &Request,
    settings: &Settings,
    platform: &Platform,
) -> Result<(), Response> {
    match auth {
        Auth::None | Auth::Webhook | Auth::Private => Ok(()),
        Auth::Admin => require_admin(request, &settings.admin().token),
        Auth::AdminOrSignedLink => {
            let token = settings.admin().token;
            let by_link = status_page::link_is_valid(
                token.expose(),
                request.query_param("expires").as_deref(),
                request.query_param("sig").as_deref(),
                platform.clock.now_ms(),
            );
            if by_link {
                Ok(())
            } else {
                require_admin(request, &token)
            }
        }
    }
}

/// Checks `Authorization: Bearer <admin_token>` in constant time. `Err` is the `401` to send, with no
/// detail about what was wrong. An unset token authorizes nobody.
pub fn require_admin(request: &Request, admin_token: &Secret) -> Result<(), Response> {
    let expected = admin_token.expose().as_bytes();
    let given = request
        .header("authorization")
        .and_then(|h| h.strip_prefix("Bearer "))
        .map(str::as_bytes)
        .unwrap_or_default();
    if !expected.is_empty() && bool::from(given.ct_eq(expected)) {
        Ok(())
    } else {
        Err(Response::error(401, "unauthorized"))
    }
}

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;

    fn request_with(auth: Option<&str>) -> Request {
        Request {
            method: "GET".into(),
            path: "/stats".into(),
            headers: auth
                .map(|a| vec![("authorization".to_owned(), a.to_owned())])
                .unwrap_or_default(),
            ..Default::default()
        }
    }

    #[test]
    fn admin_token_must_match_exactly() {
        let token = Secret::new("s3cret");
        assert!(require_admin(&request_with(Some("Bearer s3cret")), &token).is_ok());
        for bad in [
            None,
            Some("Bearer s3cre"),
            Some("Bearer s3cret2"),
            Some("s3cret"),
            Some("Bearer "),
        ] {
            let response = require_admin(&request_with(bad), &token).unwrap_err();
            assert_eq!(response.status, 401);
            assert_eq!(response.json_body()["error"], "unauthorized");
        }
        // An unset token never authorizes, not even an empty bearer.
        assert!(require_admin(&request_with(Some("Bearer ")), &Secret::new("")).is_err());
    }
}
