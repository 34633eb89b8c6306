//! [`NullableReal`]: how to bind an optional `f64` so PostgreSQL always sees `float8`.
//!
//! sqlx 0.9's Any driver turns a NULL `f64` parameter into a NULL `f32` (and a NULL `f32`
//! into a NULL `f64`) when it converts arguments for PostgreSQL. The statement is then
//! prepared with that parameter as `float4` and cached per connection by its SQL text, so
//! a later execution on the same connection that binds a real `f64` fails with
//! "incorrect binary data format in bind parameter". Binding through this type sends a
//! NULL that sqlx converts to a NULL `f64`, so every execution agrees on `float8`.

use sqlx::any::{Any, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Encode, Type};

/// An optional `f64` parameter that binds as `float8` whether or not it is NULL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NullableReal(pub Option<f64>);

impl Type<Any> for NullableReal {
    fn type_info() -> AnyTypeInfo {
        <f64 as Type<Any>>::type_info()
    }
}

impl<'q> Encode<'q, Any> for NullableReal {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        match self.0 {
            Some(value) => <f64 as Encode<Any>>::encode_by_ref(&value, buf),
            // Null of the `f32` kind: the converter maps it to `Option<f64>::None`.
            None => <Option<f32> as Encode<Any>>::encode_by_ref(&None, buf),
        }
    }
}
