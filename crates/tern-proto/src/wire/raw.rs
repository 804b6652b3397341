//! [`RawJson`]: content written out as it was given, never re-encoded.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Raw JSON text, written out as it is: message and room content.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson<'a>(pub Cow<'a, RawValue>);

impl<'a> RawJson<'a> {
    pub fn borrowed(v: &'a RawValue) -> Self {
        RawJson(Cow::Borrowed(v))
    }

    /// Checks that `json` is one JSON value.
    pub fn from_string(json: String) -> Result<RawJson<'static>, serde_json::Error> {
        RawValue::from_string(json).map(|v| RawJson(Cow::Owned(v)))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    pub fn into_owned(self) -> RawJson<'static> {
        RawJson(Cow::Owned(self.0.into_owned()))
    }
}

impl<'a> From<&'a RawValue> for RawJson<'a> {
    fn from(v: &'a RawValue) -> Self {
        RawJson::borrowed(v)
    }
}

impl From<Box<RawValue>> for RawJson<'static> {
    fn from(v: Box<RawValue>) -> Self {
        RawJson(Cow::Owned(v))
    }
}

/// Any JSON value: what the sender gave, passed through as it is.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for RawJson<'_> {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::SchemaType::AnyValue)
            .description(Some("any JSON value, stored and passed on as sent"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for RawJson<'_> {}

/// Equal when the JSON text is the same, byte for byte.
impl PartialEq for RawJson<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Eq for RawJson<'_> {}
