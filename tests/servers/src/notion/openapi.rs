//! Request bodies checked against Notion's published OpenAPI description, before any handler sees them.
//!
//! The description is `scripts/notion-openapi.json` of the npm package `@notionhq/notion-mcp-server`
//! **2.5.2** ("Notion API 2025-09-03 - Data Source Edition", OpenAPI 3.1.0, MIT, © Notion Labs), vendored
//! unedited as `tests/servers/notion-openapi.json` (see `tests/servers/README-openapi.md`) and parsed once.
//!
//! [`check_body`] finds the operation for a method and a request path (a literal segment beats a
//! `{parameter}`, so `/v1/users/me` is not `/v1/users/{user_id}`) and checks the JSON body against the
//! operation's `requestBody` schema, answering as Notion does: `400 validation_error` with
//! `body failed validation: body.<path> should be …, instead was `…`.`, or, when every branch of a
//! `oneOf`/`anyOf` fails, `body failed validation. Fix one:` and one line per branch.
//!
//! The validator implements the JSON-Schema subset the spec uses: `$ref` (local), `type` (a name or a
//! list, `null` included), `properties`, `required`, `additionalProperties` (boolean or schema), `items`,
//! `maxItems`, `enum`, `const`, `oneOf`, `anyOf`, `format` (`uuid` as Notion reads ids, with or without
//! dashes; `int32`); and a few neighbours that cost nothing and that the errata or a later spec may use:
//! `allOf`, `not`, `nullable` (OpenAPI 3.0), `minItems`, `maxLength`/`minLength` (UTF-16 units, as
//! Notion's JavaScript counts), `minimum`/`maximum`. Annotations (`description`, `default`, `deprecated`,
//! …) are ignored. A keyword, type or format it does not know fails a unit test, so a newer spec cannot
//! quietly use one that would be skipped.
//!
//! The spec describes the inputs of the MCP server's tools, which is close to but not quite what Notion
//! accepts; [`errata`] patches, in code, the places where it would refuse requests that Notion documents
//! and accepts, each with its reason. The errata only widen. Where the spec is looser than Notion (it
//! closes no request body at its top level, and sets no text length limit), the handlers' own checks
//! still apply after this one.

use std::sync::OnceLock;

use serde_json::{json, Map, Value};

use super::error::NotionError;
use super::normalize_id;

/// The vendored spec, exactly as `@notionhq/notion-mcp-server` 2.5.2 ships it.
const SPEC: &str = include_str!("../../notion-openapi.json");

/// The schema every value matches, for a `$ref` that points nowhere.
static ANYTHING: Value = Value::Bool(true);

/// The parsed spec (after the errata) and its operations.
struct Spec {
    doc: Value,
    operations: Vec<Operation>,
}

/// One method on one path template of the spec.
struct Operation {
    /// Upper-case, as in the request (`POST`).
    method: String,
    /// `/v1/pages/{page_id}`.
    template: String,
    /// The `application/json` schema of the request body, and whether a body is required.
    body: Option<(Value, bool)>,
}

/// One way to make a body valid: a field (`body.parent.data_source_id`) and what it should be.
#[derive(Clone, Debug, PartialEq)]
struct Failure {
    path: String,
    /// Segments below `body`: which branch of a union got furthest.
    depth: usize,
    /// `should be a string, instead was `1``.
    text: String,
}

/// `Err` holds the alternatives: fixing any one of them is a step towards a valid body.
type Checked = Result<(), Vec<Failure>>;

fn spec() -> &'static Spec {
    static SPEC_ONCE: OnceLock<Spec> = OnceLock::new();
    SPEC_ONCE.get_or_init(|| {
        let mut doc: Value = serde_json::from_str(SPEC).expect("the vendored OpenAPI spec is JSON");
        errata(&mut doc);
        Spec::new(doc)
    })
}

/// Checks a request body against the spec's `requestBody` for `method` and `path`. Requests the spec
/// has no operation or no body schema for pass (routing is the handlers' business), and so does a body
/// that is not JSON, for the handler to answer `400 invalid_json` as Notion does.
pub(crate) fn check_body(method: &str, path: &str, body: &[u8]) -> Result<(), NotionError> {
    let spec = spec();
    let Some((schema, required)) = spec.operation(method, path).and_then(|op| op.body.as_ref())
    else {
        return Ok(());
    };
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        if !*required {
            return Ok(());
        }
        None
    } else {
        match serde_json::from_slice::<Value>(body) {
            Ok(value) => Some(value),
            Err(_) => return Ok(()),
        }
    };
    let checked = match &value {
        Some(value) => spec.check(schema, value, "body", 0),
        None => Err(vec![Failure {
            path: "body".into(),
            depth: 0,
            text: "should be defined, instead was `undefined`".into(),
        }]),
    };
    checked.map_err(|failures| NotionError::validation(message(failures)))
}

/// Notion's wording: one failure plainly, several as `Fix one:` lines.
fn message(failures: Vec<Failure>) -> String {
    let mut lines: Vec<String> = Vec::new();
    for failure in failures {
        let line = format!("{} {}.", failure.path, failure.text);
        if !lines.contains(&line) {
            lines.push(line);
        }
    }
    match lines.as_slice() {
        [one] => format!("body failed validation: {one}"),
        lines => format!("body failed validation. Fix one:\n{}", lines.join("\n")),
    }
}

impl Spec {
    fn new(doc: Value) -> Self {
        let mut operations = Vec::new();
        for (template, item) in doc["paths"].as_object().into_iter().flatten() {
            for (method, op) in item.as_object().into_iter().flatten() {
                if !matches!(
                    method.as_str(),
                    "get" | "put" | "post" | "delete" | "options" | "head" | "patch" | "trace"
                ) {
                    continue;
                }
                let body = op.get("requestBody").map(|body| {
                    let body = resolve_in(&doc, body);
                    let schema = body["content"]["application/json"]["schema"].clone();
                    (schema, body["required"] == true)
                });
                operations.push(Operation {
                    method: method.to_ascii_uppercase(),
                    template: template.clone(),
                    body: body.filter(|(schema, _)| !schema.is_null()),
                });
            }
        }
        Self { doc, operations }
    }

    /// The operation for a request: the template that matches with the fewest parameters.
    fn operation(&self, method: &str, path: &str) -> Option<&Operation> {
        let parts: Vec<&str> = path.split('/').collect();
        self.operations
            .iter()
            .filter(|op| op.method.eq_ignore_ascii_case(method))
            .filter(|op| {
                let segments: Vec<&str> = op.template.split('/').collect();
                segments.len() == parts.len()
                    && segments.iter().zip(&parts).all(|(segment, part)| {
                        if is_parameter(segment) {
                            !part.is_empty()
                        } else {
                            segment == part
                        }
                    })
            })
            .min_by_key(|op| op.template.split('/').filter(|s| is_parameter(s)).count())
    }

    fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        resolve_in(&self.doc, schema)
    }

    /// What a `$ref` (`#/components/schemas/…`) points at.
    fn target(&self, reference: &str) -> &Value {
        reference
            .strip_prefix('#')
            .and_then(|pointer| self.doc.pointer(pointer))
            .unwrap_or(&ANYTHING)
    }

    fn check(&self, schema: &Value, value: &Value, path: &str, depth: usize) -> Checked {
        let schema = match schema {
            Value::Bool(false) => {
                return fail(
                    path,
                    depth,
                    format!("should be not present, instead was {}", shown(value)),
                )
            }
            Value::Object(schema) => schema,
            _ => return Ok(()),
        };
        if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
            self.check(self.target(reference), value, path, depth)?;
        }
        if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
            return Ok(());
        }
        if let Some(types) = schema.get("type") {
            check_type(types, schema, value, path, depth)?;
        }
        if let Some(expected) = schema.get("const") {
            if value != expected {
                return fail(
                    path,
                    depth,
                    format!(
                        "should be {}, instead was {}",
                        shown(expected),
                        shown(value)
                    ),
                );
            }
        }
        if let Some(Value::Array(options)) = schema.get("enum") {
            if !options.contains(value) {
                let options: Vec<String> = options.iter().map(shown).collect();
                return fail(
                    path,
                    depth,
                    format!(
                        "should be {}, instead was {}",
                        one_of(&options),
                        shown(value)
                    ),
                );
            }
        }
        for all in schema
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.check(all, value, path, depth)?;
        }
        if let Some(Value::Array(branches)) = schema.get("anyOf") {
            self.any_of(branches, value, path, depth)?;
        }
        if let Some(Value::Array(branches)) = schema.get("oneOf") {
            self.any_of(branches, value, path, depth)?;
            let matched = branches
                .iter()
                .filter(|b| self.check(b, value, path, depth).is_ok())
                .count();
            if matched > 1 {
                return fail(
                    path,
                    depth,
                    format!(
                        "should match exactly one of its {} shapes, instead matched {matched}",
                        branches.len()
                    ),
                );
            }
        }
        if let Some(not) = schema.get("not") {
            if self.check(not, value, path, depth).is_ok() {
                let what = self.resolve(not)["description"]
                    .as_str()
                    .unwrap_or("the excluded shape");
                return fail(path, depth, format!("should not be {what}"));
            }
        }
        match value {
            Value::String(text) => check_string(schema, text, path, depth),
            Value::Number(_) => check_number(schema, value, path, depth),
            Value::Array(items) => self.check_array(schema, items, path, depth),
            Value::Object(fields) => self.check_object(schema, fields, path, depth),
            Value::Null | Value::Bool(_) => Ok(()),
        }
    }

    /// Valid if any branch is; otherwise the failures of the branches that got furthest into the value
    /// (so a paragraph block with too many items is told about its items, not that it is not a list
    /// item).
    fn any_of(&self, branches: &[Value], value: &Value, path: &str, depth: usize) -> Checked {
        let mut failures = Vec::new();
        for branch in branches {
            match self.check(branch, value, path, depth) {
                Ok(()) => return Ok(()),
                Err(found) => failures.extend(found),
            }
        }
        let deepest = failures.iter().map(|f| f.depth).max().unwrap_or(depth);
        failures.retain(|f| f.depth == deepest);
        Err(failures)
    }

    fn check_array(
        &self,
        schema: &Map<String, Value>,
        items: &[Value],
        path: &str,
        depth: usize,
    ) -> Checked {
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64) {
            if items.len() as u64 > max {
                return fail(
                    &format!("{path}.length"),
                    depth,
                    format!("should be ≤ `{max}`, instead was `{}`", items.len()),
                );
            }
        }
        if let Some(min) = schema.get("minItems").and_then(Value::as_u64) {
            if (items.len() as u64) < min {
                return fail(
                    &format!("{path}.length"),
                    depth,
                    format!("should be ≥ `{min}`, instead was `{}`", items.len()),
                );
            }
        }
        if let Some(each) = schema.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.check(each, item, &format!("{path}[{i}]"), depth + 1)?;
            }
        }
        Ok(())
    }

    fn check_object(
        &self,
        schema: &Map<String, Value>,
        fields: &Map<String, Value>,
        path: &str,
        depth: usize,
    ) -> Checked {
        for key in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(key) = key.as_str().filter(|key| !fields.contains_key(*key)) {
                return fail(
                    &format!("{path}.{key}"),
                    depth + 1,
                    "should be defined, instead was `undefined`".into(),
                );
            }
        }
        let declared = schema.get("properties").and_then(Value::as_object);
        for (key, value) in fields {
            let field = format!("{path}.{key}");
            match declared.and_then(|declared| declared.get(key)) {
                Some(property) => self.check(property, value, &field, depth + 1)?,
                None => {
                    if let Some(extra) = schema.get("additionalProperties") {
                        self.check(extra, value, &field, depth + 1)?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// `{page_id}` in a path template.
fn is_parameter(segment: &str) -> bool {
    segment.starts_with('{') && segment.ends_with('}')
}

fn fail(path: &str, depth: usize, text: String) -> Checked {
    Err(vec![Failure {
        path: path.to_owned(),
        depth,
        text,
    }])
}

/// A `$ref` (`#/components/…`) followed to its target, through chains; anything else as is. Every
/// `$ref` of the vendored spec resolves (a unit test says so), so a miss cannot hide a rule.
fn resolve_in<'a>(doc: &'a Value, mut schema: &'a Value) -> &'a Value {
    for _ in 0..32 {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(reference) => {
                schema = reference
                    .strip_prefix('#')
                    .and_then(|pointer| doc.pointer(pointer))
                    .unwrap_or(&ANYTHING);
            }
            None => break,
        }
    }
    schema
}

fn check_type(
    types: &Value,
    schema: &Map<String, Value>,
    value: &Value,
    path: &str,
    depth: usize,
) -> Checked {
    let mut names: Vec<&str> = match types {
        Value::String(name) => vec![name.as_str()],
        Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
        _ => return Ok(()),
    };
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        names.push("null");
    }
    if names.iter().any(|name| has_type(value, name)) {
        return Ok(());
    }
    let names: Vec<String> = names.iter().map(|name| type_name(name)).collect();
    fail(
        path,
        depth,
        format!("should be {}, instead was {}", one_of(&names), shown(value)),
    )
}

fn has_type(value: &Value, name: &str) -> bool {
    match name {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        "number" => value.is_number(),
        "integer" => {
            value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        _ => false,
    }
}

fn type_name(name: &str) -> String {
    match name {
        "object" | "array" | "integer" => format!("an {name}"),
        "null" => "`null`".into(),
        other => format!("a {other}"),
    }
}

fn check_string(schema: &Map<String, Value>, text: &str, path: &str, depth: usize) -> Checked {
    let units = text.encode_utf16().count() as u64;
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64) {
        if units > max {
            return fail(
                &format!("{path}.length"),
                depth,
                format!("should be ≤ `{max}`, instead was `{units}`"),
            );
        }
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64) {
        if units < min {
            return fail(
                &format!("{path}.length"),
                depth,
                format!("should be ≥ `{min}`, instead was `{units}`"),
            );
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("uuid") && normalize_id(text).is_none()
    {
        return fail(
            path,
            depth,
            format!(
                "should be a valid uuid, instead was {}",
                shown(&json!(text))
            ),
        );
    }
    Ok(())
}

fn check_number(schema: &Map<String, Value>, value: &Value, path: &str, depth: usize) -> Checked {
    let number = value.as_f64().unwrap_or(f64::NAN);
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64) {
        if number > max {
            return fail(
                path,
                depth,
                format!("should be ≤ `{max}`, instead was {}", shown(value)),
            );
        }
    }
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
        if number < min {
            return fail(
                path,
                depth,
                format!("should be ≥ `{min}`, instead was {}", shown(value)),
            );
        }
    }
    if schema.get("format").and_then(Value::as_str) == Some("int32")
        && !(f64::from(i32::MIN)..=f64::from(i32::MAX)).contains(&number)
    {
        return fail(
            path,
            depth,
            format!("should be a 32-bit integer, instead was {}", shown(value)),
        );
    }
    Ok(())
}

/// `` `a` ``, `` `a` or `b` ``, `` `a`, `b` or `c` ``.
fn one_of(options: &[String]) -> String {
    match options {
        [] => "nothing".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A value as Notion quotes it in messages: JSON in backticks, cut after 50 characters.
fn shown(value: &Value) -> String {
    let text = value.to_string();
    match text.char_indices().nth(50) {
        Some((cut, _)) => format!("`{}...`", &text[..cut]),
        None => format!("`{text}`"),
    }
}

/// Places where the vendored spec refuses requests that Notion documents and accepts, patched after
/// parsing (the file itself stays as published). Each erratum first checks that the defect is still
/// there and panics if not, so a newer spec that fixes it makes the unit tests say the erratum can go.
fn errata(doc: &mut Value) {
    data_source_parent(doc);
    mcp_string_encoding(doc);
    undescribed_block_types(doc);
    block_colors_and_children(doc);
    timestamp_sorts(doc);
}

/// `parentRequest` (the `parent` of `POST /v1/pages`) has no `data_source_id` branch: its member named
/// `dataSourceIdParentRequest` describes a `database_id` parent. Yet a `data_source_id` parent is what
/// Notion-Version 2025-09-03 is about (Notion's "Create a page" and upgrade guide for 2025-09-03:
/// `{"type": "data_source_id", "data_source_id": "…"}`; a `database_id` parent fails for databases with
/// several data sources). The branch is added, shaped like the spec's others.
fn data_source_parent(doc: &mut Value) {
    let branches = doc
        .pointer_mut("/components/schemas/parentRequest/oneOf")
        .and_then(Value::as_array_mut)
        .expect("erratum: parentRequest.oneOf is no longer there; revisit the errata");
    assert!(
        !branches
            .iter()
            .any(|b| b.to_string().contains("\"data_source_id\"")),
        "erratum: parentRequest now has a data_source_id branch; drop this erratum"
    );
    branches.push(json!({
        "type": "object",
        "properties": {
            "type": { "const": "data_source_id" },
            "data_source_id": { "type": "string", "format": "uuid" }
        },
        "required": ["data_source_id"]
    }));
}

/// The spec types some of `POST /v1/pages`' fields as the MCP tool's input, not as Notion's: `icon` and
/// `cover` are `{"type": "string", "format": "json"}`, and `children` is an array of strings. The MCP
/// server JSON-decodes such strings before it calls Notion (`deserializeParams` in the package's
/// `src/openapi-mcp-server/mcp/proxy.ts`), so on the wire, and in Notion's docs, they are objects: an
/// icon or cover file/emoji object, and block objects like those `PATCH /v1/blocks/{id}/children`
/// takes. `format: json` therefore means "any JSON value" (the handlers check icons and covers), and
/// the page's `children` use the spec's own block schema.
fn mcp_string_encoding(doc: &mut Value) {
    let mut replaced = 0;
    replace_json_strings(doc, &mut replaced);
    assert!(
        replaced > 0,
        "erratum: no `format: json` strings left in the spec; drop this part of the erratum"
    );
    let items = doc
        .pointer_mut(
            "/paths/~1v1~1pages/post/requestBody/content/application~1json/schema/properties/children/items",
        )
        .expect("erratum: POST /v1/pages has no children.items any more; revisit the errata");
    assert_eq!(
        *items,
        json!({ "type": "string" }),
        "erratum: POST /v1/pages children.items changed; revisit the errata"
    );
    *items = json!({ "$ref": "#/components/schemas/blockObjectRequest" });
}

fn replace_json_strings(value: &mut Value, replaced: &mut usize) {
    match value {
        Value::Object(map) => {
            if map.get("type") == Some(&json!("string"))
                && map.get("format") == Some(&json!("json"))
            {
                map.remove("type");
                map.remove("format");
                *replaced += 1;
            }
            map.values_mut()
                .for_each(|value| replace_json_strings(value, replaced));
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|value| replace_json_strings(value, replaced)),
        _ => {}
    }
}

/// `blockObjectRequest` (the blocks of `PATCH /v1/blocks/{id}/children`) describes two block types,
/// `paragraph` and `bulleted_list_item`, each closed to its type key and `type`. Notion documents about
/// thirty block types for that endpoint (headings, to-dos, quotes, dividers, files, …) and block
/// objects in requests carry `"object": "block"` in its own examples. So the two described shapes also
/// take `"object": "block"`, and a block of a type the spec does not describe is left to the server's
/// block checks (`blocks.rs`), which model Notion's rules for the types this server supports.
fn undescribed_block_types(doc: &mut Value) {
    let branches: Vec<String> = doc
        .pointer("/components/schemas/blockObjectRequest/anyOf")
        .and_then(Value::as_array)
        .expect("erratum: blockObjectRequest.anyOf is no longer there; revisit the errata")
        .iter()
        .map(|b| {
            b["$ref"]
                .as_str()
                .expect("erratum: a block branch is not a $ref")
                .to_owned()
        })
        .collect();
    let mut described = Vec::new();
    for reference in branches {
        let block = doc
            .pointer_mut(reference.trim_start_matches('#'))
            .and_then(Value::as_object_mut)
            .expect("erratum: a block branch does not resolve");
        assert_eq!(
            block.get("additionalProperties"),
            Some(&json!(false)),
            "erratum: {reference} is open now; revisit the errata"
        );
        let properties = block
            .get_mut("properties")
            .and_then(Value::as_object_mut)
            .expect("erratum: a block branch has no properties");
        assert!(
            !properties.contains_key("object"),
            "erratum: {reference} declares `object` now; revisit the errata"
        );
        described.extend(properties.keys().filter(|k| *k != "type").cloned());
        properties.insert("object".into(), json!({ "const": "block" }));
    }
    let any_described: Vec<Value> = described
        .iter()
        .map(|kind| json!({ "required": [kind] }))
        .chain([json!({
            "properties": { "type": { "enum": described } },
            "required": ["type"]
        })])
        .collect();
    doc.pointer_mut("/components/schemas/blockObjectRequest/anyOf")
        .and_then(Value::as_array_mut)
        .expect("checked above")
        .push(json!({
            "type": "object",
            "not": {
                "description": format!("a {} block of another shape", described.join(" or ")),
                "anyOf": any_described
            }
        }));
}

/// The two block shapes the spec describes are closed to `rich_text`, but Notion documents two more
/// fields for both paragraph and bulleted list item blocks: `color` (one of its named colours) and
/// `children` (nested blocks; Notion allows two levels in one request, which `blocks.rs` enforces).
fn block_colors_and_children(doc: &mut Value) {
    const COLORS: &[&str] = &[
        "default",
        "gray",
        "brown",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "red",
        "default_background",
        "gray_background",
        "brown_background",
        "orange_background",
        "yellow_background",
        "green_background",
        "blue_background",
        "purple_background",
        "pink_background",
        "red_background",
    ];
    for (schema, kind) in [
        ("paragraphBlockRequest", "paragraph"),
        ("bulletedListItemBlockRequest", "bulleted_list_item"),
    ] {
        let fields = doc
            .pointer_mut(&format!(
                "/components/schemas/{schema}/properties/{kind}/properties"
            ))
            .and_then(Value::as_object_mut)
            .unwrap_or_else(|| {
                panic!("erratum: {schema}.{kind} has no properties; revisit the errata")
            });
        assert!(
            !fields.contains_key("color") && !fields.contains_key("children"),
            "erratum: {schema}.{kind} declares color or children now; revisit the errata"
        );
        fields.insert("color".into(), json!({ "type": "string", "enum": COLORS }));
        fields.insert(
            "children".into(),
            json!({ "type": "array", "items": { "$ref": "#/components/schemas/blockObjectRequest" } }),
        );
    }
}

/// `sortObject` (the `sorts` of a data source query) requires `property`, but Notion documents a second
/// kind of sort, `{"timestamp": "created_time" | "last_edited_time", "direction": …}`. A sort needs
/// one of the two.
fn timestamp_sorts(doc: &mut Value) {
    let sort = doc
        .pointer_mut("/components/schemas/sortObject")
        .and_then(Value::as_object_mut)
        .expect("erratum: sortObject is no longer there; revisit the errata");
    assert_eq!(
        sort.get("required"),
        Some(&json!(["property", "direction"])),
        "erratum: sortObject.required changed; revisit the errata"
    );
    let properties = sort
        .get_mut("properties")
        .and_then(Value::as_object_mut)
        .expect("erratum: sortObject has no properties");
    assert!(
        !properties.contains_key("timestamp"),
        "erratum: sortObject has timestamp sorts now; drop this erratum"
    );
    properties.insert(
        "timestamp".into(),
        json!({ "type": "string", "enum": ["created_time", "last_edited_time"] }),
    );
    sort.insert("required".into(), json!(["direction"]));
    sort.insert(
        "anyOf".into(),
        json!([{ "required": ["property"] }, { "required": ["timestamp"] }]),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keywords the validator acts on.
    const KEYWORDS: &[&str] = &[
        "$ref",
        "type",
        "nullable",
        "const",
        "enum",
        "allOf",
        "anyOf",
        "oneOf",
        "not",
        "format",
        "maxLength",
        "minLength",
        "minimum",
        "maximum",
        "items",
        "maxItems",
        "minItems",
        "properties",
        "required",
        "additionalProperties",
    ];

    /// Keywords that only annotate and change nothing about which values are valid.
    const ANNOTATIONS: &[&str] = &[
        "description",
        "default",
        "deprecated",
        "title",
        "example",
        "examples",
        "readOnly",
        "writeOnly",
    ];

    /// Formats the validator checks; any other makes the keyword test fail.
    const FORMATS: &[&str] = &["uuid", "int32"];

    /// The `type` names of JSON Schema.
    const TYPES: &[&str] = &[
        "object", "array", "string", "number", "integer", "boolean", "null",
    ];

    const DS: &str = "0f1e2d3c-4b5a-4697-8877-665544332211";

    /// `None` if `check_body` lets the body through, else the message it answers with.
    fn body_error(method: &str, path: &str, body: Value) -> Option<String> {
        check_body(method, path, body.to_string().as_bytes())
            .err()
            .map(|_| message_of(method, path, &body))
    }

    /// The message alone, through the same path `check_body` takes.
    fn message_of(method: &str, path: &str, body: &Value) -> String {
        let spec = spec();
        let (schema, _) = spec
            .operation(method, path)
            .and_then(|op| op.body.as_ref())
            .expect("operation with a body");
        message(spec.check(schema, body, "body", 0).expect_err("invalid"))
    }

    fn page(children: Value) -> Value {
        json!({
            "parent": { "type": "data_source_id", "data_source_id": DS },
            "properties": { "Name": { "title": [{ "text": { "content": "Call" } }] } },
            "children": children,
        })
    }

    fn paragraph(items: usize) -> Value {
        let items: Vec<Value> = (0..items)
            .map(|_| json!({ "type": "text", "text": { "content": "x", "link": null } }))
            .collect();
        json!({ "object": "block", "type": "paragraph", "paragraph": { "rich_text": items } })
    }

    /// Every schema reachable from the spec, visited once per place it appears.
    fn schemas(doc: &Value) -> Vec<&Value> {
        fn walk<'a>(schema: &'a Value, out: &mut Vec<&'a Value>) {
            let Some(map) = schema.as_object() else {
                return;
            };
            out.push(schema);
            for key in ["items", "additionalProperties", "not"] {
                if let Some(sub) = map.get(key) {
                    walk(sub, out);
                }
            }
            for key in ["allOf", "anyOf", "oneOf"] {
                for sub in map.get(key).and_then(Value::as_array).into_iter().flatten() {
                    walk(sub, out);
                }
            }
            for sub in map
                .get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                walk(sub.1, out);
            }
        }
        let mut out = Vec::new();
        for schema in doc["components"]["schemas"]
            .as_object()
            .into_iter()
            .flatten()
        {
            walk(schema.1, &mut out);
        }
        for item in doc["paths"].as_object().into_iter().flatten() {
            for op in item.1.as_object().into_iter().flatten() {
                for content in op.1["requestBody"]["content"]
                    .as_object()
                    .into_iter()
                    .flatten()
                {
                    walk(&content.1["schema"], &mut out);
                }
            }
        }
        out
    }

    #[test]
    fn the_spec_loads_with_its_errata_and_every_ref_resolves() {
        let spec = spec();
        assert!(spec.doc["info"]["description"]
            .as_str()
            .unwrap()
            .contains("2025-09-03"));
        for schema in schemas(&spec.doc) {
            if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
                assert!(
                    reference
                        .strip_prefix('#')
                        .and_then(|p| spec.doc.pointer(p))
                        .is_some(),
                    "{reference} does not resolve"
                );
            }
        }
    }

    #[test]
    fn every_keyword_type_and_format_in_the_spec_is_understood() {
        for schema in schemas(&spec().doc) {
            let map = schema.as_object().unwrap();
            for key in map.keys() {
                assert!(
                    KEYWORDS.contains(&key.as_str()) || ANNOTATIONS.contains(&key.as_str()),
                    "the validator does not implement `{key}` (in {schema})"
                );
            }
            let types = match &map.get("type") {
                Some(Value::String(name)) => vec![name.as_str()],
                Some(Value::Array(names)) => names.iter().filter_map(Value::as_str).collect(),
                _ => vec![],
            };
            for name in types {
                assert!(TYPES.contains(&name), "unknown type `{name}` in {schema}");
            }
            if let Some(format) = map.get("format").and_then(Value::as_str) {
                assert!(
                    FORMATS.contains(&format),
                    "unknown format `{format}` in {schema}"
                );
            }
        }
    }

    #[test]
    fn operations_are_found_by_template_and_literals_win() {
        let spec = spec();
        let find =
            |method: &str, path: &str| spec.operation(method, path).map(|op| op.template.as_str());
        assert_eq!(find("GET", "/v1/users/me"), Some("/v1/users/me"));
        assert_eq!(find("GET", "/v1/users/abc"), Some("/v1/users/{user_id}"));
        assert_eq!(
            find("PATCH", &format!("/v1/pages/{DS}")),
            Some("/v1/pages/{page_id}")
        );
        assert_eq!(find("POST", "/v1/pages"), Some("/v1/pages"));
        assert_eq!(
            find("POST", &format!("/v1/data_sources/{DS}/query")),
            Some("/v1/data_sources/{data_source_id}/query")
        );
        assert_eq!(
            find("PATCH", &format!("/v1/blocks/{DS}/children")),
            Some("/v1/blocks/{block_id}/children")
        );
        assert_eq!(
            find("GET", &format!("/v1/databases/{DS}")),
            Some("/v1/databases/{database_id}")
        );
        assert_eq!(find("PATCH", "/v1/pages/"), None);
        assert_eq!(find("POST", "/v1/nothing"), None);
        // Every endpoint of the test server that takes a body has a schema in the spec.
        for (method, path) in [
            ("POST", "/v1/pages".to_owned()),
            ("PATCH", format!("/v1/pages/{DS}")),
            ("PATCH", format!("/v1/blocks/{DS}/children")),
            ("PATCH", format!("/v1/blocks/{DS}")),
            ("PATCH", format!("/v1/data_sources/{DS}")),
            ("POST", format!("/v1/data_sources/{DS}/query")),
        ] {
            assert!(
                spec.operation(method, &path)
                    .and_then(|op| op.body.as_ref())
                    .is_some(),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn a_valid_page_with_blocks_passes() {
        let heading = json!({ "object": "block", "type": "heading_2", "heading_2": { "rich_text": [{ "type": "text", "text": { "content": "Summary" } }] } });
        let bullet =
            json!({ "type": "bulleted_list_item", "bulleted_list_item": { "rich_text": [] } });
        let body = page(json!([heading, paragraph(100), bullet]));
        assert_eq!(body_error("POST", "/v1/pages", body), None);
        let undashed =
            json!({ "parent": { "data_source_id": DS.replace('-', "") }, "properties": {} });
        assert_eq!(body_error("POST", "/v1/pages", undashed), None);
        let icon = json!({ "parent": { "page_id": DS }, "properties": {}, "icon": { "type": "emoji", "emoji": "📞" } });
        assert_eq!(body_error("POST", "/v1/pages", icon), None);
    }

    #[test]
    fn messages_name_the_field_as_notion_does() {
        let pages = |body| body_error("POST", "/v1/pages", body);
        assert_eq!(
            pages(json!({ "parent": { "data_source_id": DS } })).unwrap(),
            "body failed validation: body.properties should be defined, instead was `undefined`."
        );
        assert_eq!(
            pages(json!({ "parent": { "data_source_id": DS }, "properties": [] })).unwrap(),
            "body failed validation: body.properties should be an object, instead was `[]`."
        );
        assert_eq!(
            pages(page(json!([paragraph(101)]))).unwrap(),
            "body failed validation: body.children[0].paragraph.rich_text.length should be ≤ `100`, instead was `101`."
        );
        let mut block = paragraph(1);
        block["paragraph"]["rich_text"][0]["text"]["content"] = json!(7);
        assert_eq!(
            pages(page(json!([block]))).unwrap(),
            "body failed validation: body.children[0].paragraph.rich_text[0].text.content should be a string, instead was `7`."
        );
        let long = "y".repeat(80);
        let parent =
            pages(json!({ "parent": { "data_source_id": long }, "properties": {} })).unwrap();
        assert!(
            parent.starts_with("body failed validation. Fix one:\n"),
            "{parent}"
        );
        assert!(
            parent.contains(&format!(
                "\nbody.parent.data_source_id should be a valid uuid, instead was `\"{}...`.",
                "y".repeat(49)
            )),
            "{parent}"
        );
        assert!(
            parent.contains("\nbody.parent.page_id should be defined, instead was `undefined`."),
            "{parent}"
        );
        let query = format!("/v1/data_sources/{DS}/query");
        assert_eq!(
            body_error("POST", &query, json!({ "sorts": [{ "property": "Name", "direction": "up" }] })).unwrap(),
            "body failed validation: body.sorts[0].direction should be `\"ascending\"` or `\"descending\"`, instead was `\"up\"`."
        );
        let created =
            json!({ "sorts": [{ "timestamp": "created_time", "direction": "ascending" }] });
        assert_eq!(body_error("POST", &query, created), None);
        assert_eq!(
            body_error("POST", &query, json!({ "sorts": [{ "direction": "ascending" }] })).unwrap(),
            "body failed validation. Fix one:\nbody.sorts[0].property should be defined, instead was `undefined`.\nbody.sorts[0].timestamp should be defined, instead was `undefined`."
        );
        assert_eq!(
            body_error("POST", &query, json!({ "start_cursor": null })).unwrap(),
            "body failed validation: body.start_cursor should be a string, instead was `null`."
        );
        let link = json!({ "children": [{ "paragraph": { "rich_text": [{ "text": { "content": "a", "link": { "href": "x" } } }] } }] });
        assert_eq!(
            body_error("PATCH", &format!("/v1/blocks/{DS}/children"), link).unwrap(),
            "body failed validation: body.children[0].paragraph.rich_text[0].text.link.url should be defined, instead was `undefined`."
        );
    }

    #[test]
    fn bodies_are_optional_only_where_the_spec_says_so() {
        let query = format!("/v1/data_sources/{DS}/query");
        assert!(check_body("POST", &query, b"").is_ok());
        assert!(
            check_body("POST", &query, b"not json").is_ok(),
            "left to the handler's invalid_json"
        );
        assert!(check_body("GET", &format!("/v1/pages/{DS}"), b"{\"x\":1}").is_ok());
        assert!(check_body("PATCH", &format!("/v1/pages/{DS}/markdown"), b" ").is_err());
        assert_eq!(
            message_of("POST", &query, &json!([])),
            "body failed validation: body should be an object, instead was `[]`."
        );
    }

    #[test]
    fn undescribed_block_types_pass_but_described_ones_are_checked() {
        let append = format!("/v1/blocks/{DS}/children");
        let divider =
            json!({ "children": [{ "object": "block", "type": "divider", "divider": {} }] });
        assert_eq!(body_error("PATCH", &append, divider), None);
        let untyped = json!({ "children": [{ "to_do": { "rich_text": [], "checked": true } }] });
        assert_eq!(body_error("PATCH", &append, untyped), None);
        let nested = json!({ "children": [{ "bulleted_list_item": { "rich_text": [], "color": "red", "children": [paragraph(1)] } }] });
        assert_eq!(body_error("PATCH", &append, nested), None);
        let old_shape = json!({ "children": [{ "paragraph": { "rich_text": [], "text": [] } }] });
        assert_eq!(
            body_error("PATCH", &append, old_shape).unwrap(),
            "body failed validation: body.children[0].paragraph.text should be not present, instead was `[]`."
        );
        let deep = json!({ "children": [{ "paragraph": { "rich_text": [], "children": [paragraph(101)] } }] });
        assert_eq!(
            body_error("PATCH", &append, deep).unwrap(),
            "body failed validation: body.children[0].paragraph.children[0].paragraph.rich_text.length should be ≤ `100`, instead was `101`."
        );
        let page = json!({ "children": [{ "object": "page", "type": "paragraph", "paragraph": { "rich_text": [] } }] });
        assert!(body_error("PATCH", &append, page)
            .unwrap()
            .contains("body.children[0].object should be `\"block\"`, instead was `\"page\"`."));
    }

    /// Why the errata exist: the spec as published refuses the app's own page create (a
    /// `data_source_id` parent, block objects with `"object": "block"`, a `heading_2`).
    #[test]
    fn the_unpatched_spec_refuses_what_notion_accepts() {
        let raw = Spec::new(serde_json::from_str(SPEC).unwrap());
        let (schema, _) = raw
            .operation("POST", "/v1/pages")
            .unwrap()
            .body
            .as_ref()
            .unwrap();
        let app = json!({
            "parent": { "type": "data_source_id", "data_source_id": DS },
            "properties": {},
        });
        let failures = raw.check(schema, &app, "body", 0).unwrap_err();
        assert!(
            failures.contains(&Failure {
                path: "body.parent.type".into(),
                depth: 2,
                text: "should be `\"workspace\"`, instead was `\"data_source_id\"`".into(),
            }),
            "{failures:?}"
        );
        let with_blocks =
            json!({ "parent": { "page_id": DS }, "properties": {}, "children": [paragraph(1)] });
        assert_eq!(
            message(raw.check(schema, &with_blocks, "body", 0).unwrap_err()),
            "body failed validation: body.children[0] should be a string, instead was `{\"object\":\"block\",\"paragraph\":{\"rich_text\":[{\"text...`."
        );
        let append = format!("/v1/blocks/{DS}/children");
        let (schema, _) = raw
            .operation("PATCH", &append)
            .unwrap()
            .body
            .as_ref()
            .unwrap();
        let heading =
            json!({ "children": [{ "type": "heading_2", "heading_2": { "rich_text": [] } }] });
        assert!(raw.check(schema, &heading, "body", 0).is_err());
        assert!(raw
            .check(schema, &json!({ "children": [paragraph(1)] }), "body", 0)
            .is_err());
    }

    #[test]
    fn the_helpers_word_values_as_notion_does() {
        assert_eq!(
            one_of(&["`a`".into(), "`b`".into(), "`c`".into()]),
            "`a`, `b` or `c`"
        );
        assert_eq!(shown(&json!("é".repeat(60))).chars().count(), 2 + 50 + 3);
        assert!(has_type(&json!(3.0), "integer") && !has_type(&json!(3.5), "integer"));
        assert_eq!(
            check_string(
                &json!({ "maxLength": 2 }).as_object().unwrap().clone(),
                "😀😀",
                "body.x",
                1
            ),
            fail(
                "body.x.length",
                1,
                "should be ≤ `2`, instead was `4`".into()
            )
        );
    }
}
