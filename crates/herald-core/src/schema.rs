//! JSON Schemas of command inputs and outputs: the documents the OpenAPI spec files them under,
//! compiled checks, and schema violations as Herald's field errors (never echoing the input).

use std::{any::type_name, borrow::Cow, collections::BTreeSet, fmt};

use serde_json::{Value, json};
use utoipa::{
    ToSchema,
    openapi::{RefOr, Schema},
};

use crate::error::{ApiError, FieldError, MAX_FIELD_ERRORS};

/// A named schema with the component schemas it refers to.
#[derive(Clone)]
pub struct SchemaDoc {
    /// Component name the OpenAPI spec files it under.
    pub name: String,
    pub schema: RefOr<Schema>,
    /// Components referenced from `schema`, recursively.
    pub components: Vec<(String, RefOr<Schema>)>,
}

impl fmt::Debug for SchemaDoc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SchemaDoc").field("name", &self.name).finish_non_exhaustive()
    }
}

impl SchemaDoc {
    pub(crate) fn of<T: ToSchema>(fallback: String) -> Self {
        // Generic types share one `name()` across instantiations; give those the command's name.
        let name = if type_name::<T>().contains('<') { fallback } else { T::name().into_owned() };
        let mut components = Vec::new();
        T::schemas(&mut components);
        Self { name, schema: T::schema(), components }
    }

    /// A self-contained JSON Schema document: the schema plus every component it refers to,
    /// under the same JSON pointers the OpenAPI document uses.
    pub fn to_json_schema(&self) -> Value {
        let mut schemas = serde_json::Map::new();
        for (name, schema) in &self.components {
            schemas.insert(name.clone(), serde_json::to_value(schema).unwrap_or(Value::Null));
        }
        schemas.insert(self.name.clone(), serde_json::to_value(&self.schema).unwrap_or(Value::Null));
        json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$ref": format!("#/components/schemas/{}", self.name),
            "components": { "schemas": schemas },
        })
    }
}

/// A compiled JSON Schema with Herald's field errors: what a command checks its input against,
/// and what a command that takes another command's input (an import of `clients.create` lines)
/// checks each item against.
pub struct SchemaCheck {
    validator: jsonschema::Validator,
    /// The top-level fields, when the schema allows no others: an object with more unknown keys
    /// than an answer lists is refused on them before the full check (which would collect them
    /// all).
    known: Option<BTreeSet<String>>,
}

impl fmt::Debug for SchemaCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SchemaCheck")
    }
}

impl SchemaCheck {
    /// The schema of `T`. Panics on a schema that does not compile: a programming error that
    /// the first test building the registry catches.
    pub fn of<T: ToSchema>(fallback_name: String) -> Self {
        Self::compile(&SchemaDoc::of::<T>(fallback_name))
    }

    pub(crate) fn compile(doc: &SchemaDoc) -> Self {
        let document = doc.to_json_schema();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&document)
            .unwrap_or_else(|err| panic!("the schema {} does not compile: {err}", doc.name));
        Self { validator, known: closed_fields(&document) }
    }

    /// The failing fields of `input`: every one up to [`MAX_FIELD_ERRORS`]; past that the check
    /// stops and the error says `errors_truncated`.
    pub fn validate(&self, input: &Value) -> Result<(), ApiError> {
        // One more than an answer lists, so the error knows there were more.
        let mut errors = Found::new(MAX_FIELD_ERRORS + 1);
        if let (Some(known), Value::Object(fields)) = (&self.known, input) {
            for name in fields.keys().filter(|name| !known.contains(*name)) {
                errors.push(FieldError::new(name.clone(), UNKNOWN));
                if errors.full() {
                    return Err(ApiError::validation(errors.0));
                }
            }
            errors.0.clear();
        }
        for err in self.validator.iter_errors(input) {
            field_errors(&err, &mut errors);
            if errors.full() {
                break;
            }
        }
        if errors.0.is_empty() { Ok(()) } else { Err(ApiError::validation(errors.0)) }
    }
}

/// The message of a key the schema does not know.
const UNKNOWN: &str = "is not a known field";

/// The top-level property names of a schema document whose root (through one `$ref`) sets
/// `additionalProperties: false`.
fn closed_fields(document: &Value) -> Option<BTreeSet<String>> {
    let mut root = document;
    if let Some(pointer) = root.get("$ref").and_then(Value::as_str) {
        root = document.pointer(pointer.strip_prefix('#')?)?;
    }
    if root.get("additionalProperties") != Some(&Value::Bool(false)) {
        return None;
    }
    let properties = root.get("properties").and_then(Value::as_object);
    Some(properties.map(|p| p.keys().cloned().collect()).unwrap_or_default())
}

/// Field errors found so far, up to a capacity.
struct Found(Vec<FieldError>, usize);

impl Found {
    fn new(cap: usize) -> Self {
        Self(Vec::new(), cap)
    }

    fn full(&self) -> bool {
        self.0.len() >= self.1
    }

    fn push(&mut self, err: FieldError) {
        if !self.full() {
            self.0.push(err);
        }
    }
}

/// Turns one schema violation into field errors (as many as `found` has room for), in words that
/// never echo the input's value (inputs hold passwords).
fn field_errors(err: &jsonschema::ValidationError<'_>, found: &mut Found) {
    use jsonschema::error::ValidationErrorKind as K;
    let path = pointer_to_field(err.instance_path().as_str());
    let at = |child: &str| if path.is_empty() { child.to_owned() } else { format!("{path}.{child}") };
    let message: Cow<'static, str> = match err.kind() {
        K::Required { property } => {
            found.push(FieldError::new(at(property.as_str().unwrap_or_default()), "is required"));
            return;
        }
        K::AdditionalProperties { unexpected } => {
            for name in unexpected {
                if found.full() {
                    break;
                }
                found.push(FieldError::new(at(name), UNKNOWN));
            }
            return;
        }
        // An optional object is `oneOf: [null, {...}]`: report why the object branch failed,
        // not that the value matched neither branch.
        K::OneOfNotValid { context } | K::AnyOf { context } => {
            let instance = err.instance_path().as_str().to_owned();
            let wrong_type = |e: &jsonschema::ValidationError<'_>| {
                matches!(e.kind(), K::Type { .. }) && e.instance_path().as_str() == instance
            };
            let mut branches = context.iter().filter(|branch| !branch.iter().all(wrong_type));
            if let (Some(branch), None) = (branches.next(), branches.next()) {
                for e in branch {
                    if found.full() {
                        break;
                    }
                    field_errors(e, found);
                }
                return;
            }
            "matches none of the allowed forms".into()
        }
        K::Type { kind } => format!("must be of type {}", type_words(kind)).into(),
        K::MinLength { limit } => format!("must be at least {limit} characters long").into(),
        K::MaxLength { limit } => format!("must be at most {limit} characters long").into(),
        K::Minimum { limit } => format!("must be at least {limit}").into(),
        K::Maximum { limit } => format!("must be at most {limit}").into(),
        K::Format { format } => format!("must be a valid {format}").into(),
        K::Enum { options } => format!("must be one of {options}").into(),
        K::Pattern { pattern } => format!("must match the pattern {pattern}").into(),
        K::MinItems { limit } => format!("must have at least {limit} items").into(),
        K::MaxItems { limit } => format!("must have at most {limit} items").into(),
        other => format!("fails the {:?} rule", other.keyword()).into(),
    };
    found.push(FieldError::new(path, message));
}

fn type_words(kind: &jsonschema::error::TypeKind) -> String {
    match kind {
        jsonschema::error::TypeKind::Single(t) => t.to_string(),
        jsonschema::error::TypeKind::Multiple(ts) => ts.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(" or "),
    }
}

/// `/filter/tags/0` -> `filter.tags.0` (with `~1` and `~0` unescaped).
fn pointer_to_field(pointer: &str) -> String {
    pointer.split('/').skip(1).map(|seg| seg.replace("~1", "/").replace("~0", "~")).collect::<Vec<_>>().join(".")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_convert() {
        assert_eq!(pointer_to_field(""), "");
        assert_eq!(pointer_to_field("/filter/tags/0"), "filter.tags.0");
        assert_eq!(pointer_to_field("/a~1b"), "a/b");
    }

    #[derive(serde::Deserialize, ToSchema)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Login {
        email: String,
        password: String,
    }

    fn errors_of(input: &Value) -> ApiError {
        SchemaCheck::of::<Login>("Login".into()).validate(input).expect_err("refused")
    }

    #[test]
    fn a_hundred_thousand_unknown_keys_give_the_first_twenty_and_say_there_were_more() {
        let mut input: serde_json::Map<String, Value> = (0..111_841).map(|i| (format!("k{i:06}"), json!(0))).collect();
        input.insert("email".into(), json!("a@example.com"));
        input.insert("password".into(), json!("secret"));
        let err = errors_of(&Value::Object(input));
        assert_eq!(err.field_errors().len(), MAX_FIELD_ERRORS);
        assert!(err.errors_truncated());
        assert!(err.field_errors().iter().all(|e| e.field.starts_with('k') && e.message == "is not a known field"));
    }

    #[test]
    fn a_closed_schema_knows_its_fields() {
        let check = SchemaCheck::of::<Login>("Login".into());
        let known: Vec<&str> = check.known.iter().flatten().map(String::as_str).collect();
        assert_eq!(known, ["email", "password"]);
    }

    #[test]
    fn one_failure_too_many_is_truncated_and_a_short_list_is_whole() {
        let mut input: serde_json::Map<String, Value> =
            (0..MAX_FIELD_ERRORS - 1).map(|i| (format!("k{i}"), json!(0))).collect();
        input.insert("email".into(), json!(1));
        let err = errors_of(&Value::Object(input));
        let mut fields: Vec<&str> = err.field_errors().iter().map(|e| e.field.as_str()).collect();
        fields.sort_unstable();
        // 19 unknown keys, `email` of the wrong type and `password` missing: one too many.
        assert_eq!(fields.len(), MAX_FIELD_ERRORS);
        assert!(err.errors_truncated());
        let exact = errors_of(&json!({"email": 1, "password": 2}));
        assert_eq!(exact.field_errors().len(), 2);
        assert!(!exact.errors_truncated());
    }
}
