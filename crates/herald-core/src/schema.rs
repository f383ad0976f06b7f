//! JSON Schemas of command inputs and outputs: the documents the OpenAPI spec files them under,
//! compiled checks, and schema violations as Herald's field errors (never echoing the input).

use std::{any::type_name, borrow::Cow, fmt};

use serde_json::{Value, json};
use utoipa::{
    ToSchema,
    openapi::{RefOr, Schema},
};

use crate::error::{ApiError, FieldError};

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
pub struct SchemaCheck(jsonschema::Validator);

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
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&doc.to_json_schema())
            .unwrap_or_else(|err| panic!("the schema {} does not compile: {err}", doc.name));
        Self(validator)
    }

    /// Every failing field of `input`.
    pub fn validate(&self, input: &Value) -> Result<(), ApiError> {
        let errors: Vec<FieldError> = self.0.iter_errors(input).flat_map(|e| field_errors(&e)).collect();
        if errors.is_empty() { Ok(()) } else { Err(ApiError::validation(errors)) }
    }
}

/// Turns one schema violation into field errors, in words that never echo the input's value
/// (inputs hold passwords).
fn field_errors(err: &jsonschema::ValidationError<'_>) -> Vec<FieldError> {
    use jsonschema::error::ValidationErrorKind as K;
    let path = pointer_to_field(err.instance_path().as_str());
    let at = |child: &str| if path.is_empty() { child.to_owned() } else { format!("{path}.{child}") };
    let message: Cow<'static, str> = match err.kind() {
        K::Required { property } => {
            return vec![FieldError::new(at(property.as_str().unwrap_or_default()), "is required")];
        }
        K::AdditionalProperties { unexpected } => {
            return unexpected.iter().map(|name| FieldError::new(at(name), "is not a known field")).collect();
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
                return branch.iter().flat_map(field_errors).collect();
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
    vec![FieldError::new(path, message)]
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
}
