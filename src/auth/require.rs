//! `Require<P>`: an extractor that admits only callers whose role holds permission `P`.
//! Extractors run before the body is read, so a role that may not act gets 403 whatever
//! it sent, and the rule stands in the handler's signature.

use super::{AuthState, CurrentUser, Permission};
use crate::error::ApiError;
use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use std::marker::PhantomData;

/// A permission as a type, for [`Require`].
pub trait PermissionMarker: Send + Sync {
    const PERMISSION: Permission;
}

/// The caller, proven to hold `P`.
pub struct Require<P>(pub CurrentUser, PhantomData<P>);

impl<P> std::ops::Deref for Require<P> {
    type Target = CurrentUser;
    fn deref(&self) -> &CurrentUser {
        &self.0
    }
}

impl<P, S> FromRequestParts<S> for Require<P>
where
    P: PermissionMarker,
    S: Send + Sync,
    AuthState: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        user.require(P::PERMISSION)?;
        Ok(Require(user, PhantomData))
    }
}

macro_rules! markers {
    ($($name:ident),* $(,)?) => {
        /// One marker type per [`Permission`], named alike.
        pub mod can {
            $(
                pub struct $name;
                impl super::PermissionMarker for $name {
                    const PERMISSION: super::Permission = super::Permission::$name;
                }
            )*
        }
    };
}

markers!(
    ManageUsers,
    ManageCamps,
    UpdateAttendance,
    RegisterPatients,
    RecordVitals,
    ManageDoctors,
    AssignDoctor,
    Consult,
    UpdateQueue,
    Prescribe,
    Dispense,
    ManageMedicines,
    ManageWebhooks,
    ReadAccessAudit,
);
