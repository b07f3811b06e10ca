//! The OpenAPI document of the public API, generated from the handlers' annotations
//! (utoipa) and served by the gateway at `/openapi.json`.
//!
//! Each handler declares its own answers and the limits it enforces; two modifiers add what
//! is not any one handler's: [`GatewayAnswers`], the statuses the gateway itself gives on
//! every route (401 where a token is needed, 400/413 for a body it cannot take, 429, 503,
//! 504), and [`Workflow`], the links a client (and schemathesis' stateful phase) follows
//! from registering to an order's view. The document is the contract the system tests hold
//! the running system to with schemathesis (`tests/system/contract.rs`).

use serde_json::json;
use utoipa::openapi::link::Link;
use utoipa::openapi::path::{Operation, PathItem};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Response, ResponseBuilder};
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
        users::Registered, users::LoggedIn, users::Renamed,
        inventory::Product, orders::PlaceOrder, orders::Placed, orders::Order, messages::OrderItem,
        analytics::OrderView, analytics::Summary, ingest::Batch, ingest::Accepted,
    )),
    modifiers(&BearerAuth, &GatewayAnswers, &Workflow)
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

/// The operations of one path, whichever methods it has.
fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// An answer whose body is the one error body every service sends.
fn error_response(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
        .build()
}

/// What the gateway answers on any route by itself, before or instead of the service: a
/// handler declares only its own answers, and these hold for all of them alike.
struct GatewayAnswers;

impl Modify for GatewayAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let retry_after = HeaderBuilder::new()
            .schema(
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::Integer)
                    .minimum(Some(1)),
            )
            .description(Some("Seconds to wait before trying again"))
            .build();
        for item in openapi.paths.paths.values_mut() {
            for operation in operations_mut(item) {
                let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
                let has_body = operation.request_body.is_some();
                let responses = &mut operation.responses.responses;
                let mut declare = |status: &str, description: &str| {
                    responses
                        .entry(status.to_string())
                        .or_insert_with(|| RefOr::T(error_response(description)));
                };
                if secured {
                    declare("401", "The bearer token is missing, not valid or expired");
                }
                if has_body {
                    declare(
                        "400",
                        "The body is not JSON of the declared form, or `Content-Type` is not \
                         `application/json`; the message says where",
                    );
                    declare("413", "The body is larger than the route takes");
                }
                declare("429", "Over the caller's rate limit; see `Retry-After`");
                declare(
                    "503",
                    "No replica of the service can take the call now (with `Retry-After` when \
                     it sheds load on purpose)",
                );
                declare("504", "The service did not answer in time");
                for status in ["429", "503"] {
                    if let Some(RefOr::T(response)) = responses.get_mut(status) {
                        response
                            .headers
                            .entry("Retry-After".to_string())
                            .or_insert_with(|| retry_after.clone());
                    }
                }
            }
        }
    }
}

/// The links of the shopping workflow, which clients and schemathesis' stateful phase
/// follow: register -> log in with the same credentials -> with the token it issues, read
/// one's profile and place an order -> read that order and its view (waiting for the read
/// model, which the order was acknowledged before).
struct Workflow;

impl Workflow {
    /// The operation whose id is `operation_id` (utoipa names it after the handler).
    fn operation<'a>(
        openapi: &'a mut utoipa::openapi::OpenApi,
        operation_id: &str,
    ) -> Option<&'a mut Operation> {
        openapi
            .paths
            .paths
            .values_mut()
            .flat_map(operations_mut)
            .find(|operation| operation.operation_id.as_deref() == Some(operation_id))
    }

    fn link(
        openapi: &mut utoipa::openapi::OpenApi,
        (source, status): (&str, &str),
        name: &str,
        link: Link,
    ) {
        let response = Self::operation(openapi, source)
            .and_then(|operation| operation.responses.responses.get_mut(status));
        if let Some(RefOr::T(response)) = response {
            response.links.insert(name.to_string(), RefOr::T(link));
        }
    }
}

impl Modify for Workflow {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let login = Link::builder()
            .operation_id("login")
            .request_body(Some(json!({
                "email": "$request.body#/email",
                "password": "$request.body#/password",
            })))
            .description("Log in with the credentials just registered")
            .build();
        Self::link(openapi, ("register", "201"), "LogIn", login);
        let bearer = "Bearer {$response.body#/token}";
        for (target, name) in [("me", "Profile"), ("place_order", "PlaceOrder")] {
            let with_token = Link::builder()
                .operation_id(target)
                .parameter("header.Authorization", bearer)
                .description("With the token login issued")
                .build();
            Self::link(openapi, ("login", "200"), name, with_token);
        }
        let order = Link::builder()
            .operation_id("get_order")
            .parameter("path.id", "$response.body#/id")
            .description("The order just placed")
            .build();
        Self::link(openapi, ("place_order", "202"), "Order", order);
        let view = Link::builder()
            .operation_id("get_view")
            .parameter("path.id", "$response.body#/id")
            .parameter("query.min_version", 1)
            .parameter("query.wait", "5s")
            .description("The read model's view of the order just placed, once projected")
            .build();
        Self::link(openapi, ("place_order", "202"), "View", view);
    }
}

/// The document as JSON.
pub fn document() -> String {
    let Ok(mut document) = serde_json::to_value(PublicApi::openapi()) else {
        return "{}".to_string();
    };
    spell_links_as_openapi_does(&mut document);
    serde_json::to_string_pretty(&document).unwrap_or_else(|_| "{}".to_string())
}

/// utoipa 5.5 writes a link's fields as Rust names them (`operation_id`, `request_body`),
/// where OpenAPI spells them `operationId`, `requestBody`; tools that follow links (the
/// stateful phase of schemathesis) then find no target.
fn spell_links_as_openapi_does(document: &mut serde_json::Value) {
    let Some(paths) = document
        .get_mut("paths")
        .and_then(serde_json::Value::as_object_mut)
    else {
        return;
    };
    let links = paths
        .values_mut()
        .filter_map(serde_json::Value::as_object_mut)
        .flat_map(|item| item.values_mut())
        .filter_map(|operation| operation.get_mut("responses")?.as_object_mut())
        .flat_map(|responses| responses.values_mut())
        .filter_map(|response| response.get_mut("links")?.as_object_mut())
        .flat_map(|links| links.values_mut())
        .filter_map(serde_json::Value::as_object_mut);
    for link in links {
        for (rust, openapi) in [
            ("operation_id", "operationId"),
            ("operation_ref", "operationRef"),
            ("request_body", "requestBody"),
        ] {
            if let Some(value) = link.remove(rust) {
                link.insert(openapi.to_string(), value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services::gateway::{allowed_methods, route};
    use axum::http::Method;
    use serde_json::Value;

    fn served() -> Value {
        serde_json::from_str(&document()).expect("the served document is JSON")
    }

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

    #[test]
    fn the_gateway_takes_no_method_the_document_does_not_declare() {
        let api = PublicApi::openapi();
        for (path, item) in &api.paths.paths {
            let concrete = path.replace("{id}", "3");
            let mut documented = Vec::new();
            for (method, operation) in [
                (Method::GET, &item.get),
                (Method::PUT, &item.put),
                (Method::POST, &item.post),
                (Method::PATCH, &item.patch),
                (Method::DELETE, &item.delete),
            ] {
                if operation.is_some() {
                    documented.push(method);
                }
            }
            let mut taken = allowed_methods(&concrete);
            // HEAD is implied by GET (RFC 9110 9.3.2); OpenAPI documents need not list it.
            taken.retain(|method| method != Method::HEAD);
            documented.sort_by_key(|m| m.to_string());
            taken.sort_by_key(|m| m.to_string());
            assert_eq!(taken, documented, "{path}");
        }
    }

    #[test]
    fn the_document_declares_the_limits_the_handlers_enforce() {
        let doc = served();
        let schemas = &doc["components"]["schemas"];
        let register = &schemas["Register"]["properties"];
        assert_eq!(register["email"]["maxLength"], users::MAX_EMAIL);
        assert_eq!(register["email"]["format"], "email");
        assert_eq!(register["password"]["minLength"], users::MIN_PASSWORD);
        assert_eq!(register["password"]["maxLength"], users::MAX_PASSWORD);
        for name in [
            &register["name"],
            &schemas["UpdateProfile"]["properties"]["name"],
        ] {
            assert_eq!(name["minLength"], 1);
            assert_eq!(name["maxLength"], users::MAX_NAME);
            assert_eq!(name["pattern"], users::NAME_PATTERN);
        }
        let items = &schemas["PlaceOrder"]["properties"]["items"];
        assert_eq!(items["minItems"], 1);
        assert_eq!(items["maxItems"], orders::MAX_ITEMS);
        let quantity = &schemas["OrderItem"]["properties"]["quantity"];
        assert_eq!(quantity["minimum"], 1);
        assert_eq!(quantity["maximum"], orders::MAX_QUANTITY);

        let parameter = |path: &str, method: &str, name: &str| -> Value {
            doc["paths"][path][method]["parameters"]
                .as_array()
                .and_then(|all| all.iter().find(|p| p["name"] == name).cloned())
                .unwrap_or_else(|| panic!("{method} {path} has no parameter {name}"))
        };
        let key = parameter("/api/orders", "post", "Idempotency-Key");
        assert_eq!(key["schema"]["minLength"], 1);
        assert_eq!(key["schema"]["maxLength"], orders::MAX_IDEMPOTENCY_KEY);
        let wait = parameter("/api/orders/{id}/view", "get", "wait");
        assert_eq!(wait["schema"]["pattern"], analytics::WAIT_PATTERN);
        let batch = &doc["paths"]["/api/ingest/events"]["post"]["requestBody"]["content"]
            ["application/json"]["schema"];
        let batch = match batch.get("$ref").and_then(Value::as_str) {
            Some(reference) => &schemas[reference.trim_start_matches("#/components/schemas/")],
            None => batch,
        };
        assert_eq!(batch["minItems"], 1);
        assert_eq!(batch["maxItems"], ingest::MAX_BATCH);
    }

    #[test]
    fn every_operation_declares_what_the_gateway_answers_by_itself() {
        let doc = served();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                let responses = &operation["responses"];
                let label = format!("{method} {path}");
                let mut expected = vec!["429", "503", "504"];
                if operation.get("security").is_some() {
                    expected.push("401");
                }
                if operation.get("requestBody").is_some() {
                    expected.extend(["400", "413"]);
                }
                for status in expected {
                    let response = &responses[status];
                    assert_eq!(
                        response["content"]["application/json"]["schema"]["$ref"],
                        "#/components/schemas/ErrorBody",
                        "{label} {status}"
                    );
                }
                for status in ["429", "503"] {
                    assert!(
                        responses[status]["headers"].get("Retry-After").is_some(),
                        "{label} {status} declares Retry-After"
                    );
                }
            }
        }
    }

    #[test]
    fn the_workflow_links_name_operations_of_the_document_as_openapi_spells_them() {
        let doc = served();
        let text = doc.to_string();
        assert!(!text.contains("\"operation_id\""), "snake_case link fields");
        let mut ids = Vec::new();
        let mut links = Vec::new();
        for item in doc["paths"].as_object().expect("paths").values() {
            for operation in item.as_object().expect("operations").values() {
                ids.push(operation["operationId"].clone());
                for response in operation["responses"]
                    .as_object()
                    .expect("responses")
                    .values()
                {
                    if let Some(found) = response.get("links").and_then(Value::as_object) {
                        links.extend(found.values().cloned());
                    }
                }
            }
        }
        for target in ["login", "me", "place_order", "get_order", "get_view"] {
            assert!(
                links.iter().any(|link| link["operationId"] == target),
                "a link leads to {target}"
            );
        }
        for link in &links {
            assert!(ids.contains(&link["operationId"]), "{link}");
        }
        let login =
            &doc["paths"]["/api/users/register"]["post"]["responses"]["201"]["links"]["LogIn"];
        assert_eq!(login["requestBody"]["password"], "$request.body#/password");
    }
}
