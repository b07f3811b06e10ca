//! The OpenAPI document of the public API, generated from the handlers' annotations
//! (utoipa) and served by the gateway at `/openapi.json`.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{analytics, ingest, inventory, messages, orders, users};
use crate::platform::http::ErrorBody;

#[derive(OpenApi)]
#[openapi(
    info(title = "faultline reference system", description = "The public API, through the gateway."),
    paths(
        users::register, users::login, users::me, users::update_me,
        inventory::list_products, inventory::get_product,
        orders::place_order, orders::get_order,
        analytics::get_view, analytics::summary,
        ingest::accept,
    ),
    components(schemas(
        ErrorBody, users::Register, users::Login, users::UpdateProfile, users::Profile,
        inventory::Product, orders::PlaceOrder, orders::Placed, orders::Order, messages::OrderItem,
        analytics::OrderView, analytics::Summary,
    )),
    modifiers(&BearerAuth)
)]
pub struct PublicApi;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(
                    HttpBuilder::new()
                        .scheme(HttpAuthScheme::Bearer)
                        .bearer_format("JWT")
                        .build(),
                ),
            );
        }
    }
}

/// The document as JSON.
pub fn document() -> String {
    PublicApi::openapi()
        .to_pretty_json()
        .unwrap_or_else(|_| "{}".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::gateway::route;
    use axum::http::Method;

    #[test]
    fn every_documented_path_is_routed_by_the_gateway() {
        let api = PublicApi::openapi();
        assert!(api.paths.paths.len() >= 10);
        for (path, item) in &api.paths.paths {
            let concrete = path.replace("{id}", "3");
            let methods = [
                (Method::GET, item.get.is_some()),
                (Method::POST, item.post.is_some()),
                (Method::PUT, item.put.is_some()),
            ];
            for (method, documented) in methods {
                if documented {
                    assert!(
                        route(&method, &concrete).is_some(),
                        "{method} {path} is documented but not routed"
                    );
                }
            }
        }
    }
}
