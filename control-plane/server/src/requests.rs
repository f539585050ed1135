//! Idempotent mutations (AIP-155): a mutation with a `request_id` stores its result under
//! `/flotilla/v1/requests/{request_id}` **in the same transaction** as the mutation itself, so
//! either both happen or neither. A repeat within 24 hours returns the stored result without
//! acting again. The record's `mod_revision` equals the mutation's revision, which is the
//! returned resource's etag, so the replayed response is byte-for-byte the first one.
//!
//! A repeat that arrives while the first call is still in flight passes the replay check and
//! then loses the race on the store (the cluster exists, the etag moved, the operation is
//! already cancelled); [`or_replay`] turns that conflict into the first call's result.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use flotilla_intent_store::keys;

use crate::context::{Ctx, Write};
use crate::errors::{ApiError, decode};

/// How long a request id is remembered.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// What is stored for one request id.
#[derive(Clone, PartialEq, prost::Message)]
pub struct RequestRecord {
    /// The full gRPC method name it was used with.
    #[prost(string, tag = "1")]
    pub method: String,
    /// The encoded response (without etag; see the module docs).
    #[prost(bytes = "vec", tag = "2")]
    pub response: Vec<u8>,
    /// When it was recorded (milliseconds since the Unix epoch).
    #[prost(int64, tag = "3")]
    pub unix_ms: i64,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The stored response of an earlier call with `request_id`, with the revision it was
/// written at; `None` when the id is new (or expired). REQUEST_ID_REUSED when it was used for
/// another method.
pub async fn replay<T: prost::Message + Default>(
    ctx: &Ctx,
    method: &str,
    request_id: &str,
) -> Result<Option<(T, i64)>, ApiError> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let key = keys::request(request_id)
        .map_err(|e| ApiError::bad_request("request_id", e.to_string()))?;
    let Some(kv) = ctx.store.get(&key).await? else {
        return Ok(None);
    };
    let rec: RequestRecord = decode(&key, &kv.value)?;
    let age_ms = now_ms().saturating_sub(rec.unix_ms);
    if u128::try_from(age_ms).unwrap_or(0) > RETENTION.as_millis() {
        return Ok(None);
    }
    if rec.method != method {
        return Err(ApiError::RequestIdReused {
            request_id: request_id.to_string(),
            method: rec.method,
        });
    }
    let resp: T = decode(&key, &rec.response)?;
    Ok(Some((resp, kv.mod_revision)))
}

/// The write (key, value to put) that records `response` for `request_id` (empty id: none),
/// ready for [`Ctx::commit`].
pub fn record<T: prost::Message>(
    method: &str,
    request_id: &str,
    response: &T,
) -> Result<Option<Write>, ApiError> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let key = keys::request(request_id)
        .map_err(|e| ApiError::bad_request("request_id", e.to_string()))?;
    let rec = RequestRecord {
        method: method.to_string(),
        response: response.encode_to_vec(),
        unix_ms: now_ms(),
    };
    Ok(Some((key, Some(prost::Message::encode_to_vec(&rec)))))
}

/// [`replay`] with the replayed response's etag fixed up by `set_etag`.
pub async fn replayed<T: prost::Message + Default>(
    ctx: &Ctx,
    method: &str,
    request_id: &str,
    set_etag: impl FnOnce(&mut T, i64),
) -> Result<Option<T>, ApiError> {
    Ok(replay::<T>(ctx, method, request_id)
        .await?
        .map(|(mut prev, rev)| {
            set_etag(&mut prev, rev);
            prev
        }))
}

/// When a mutation with `request_id` failed with a conflict that a concurrent call with the
/// same id would cause, and that call has committed, returns its result instead (its etag
/// fixed up by `set_etag`). Any other outcome is returned unchanged.
pub async fn or_replay<T: prost::Message + Default>(
    ctx: &Ctx,
    method: &str,
    request_id: &str,
    result: Result<T, ApiError>,
    set_etag: impl FnOnce(&mut T, i64),
) -> Result<T, ApiError> {
    match result {
        Err(e) if !request_id.is_empty() && e.is_conflict() => {
            match replayed(ctx, method, request_id, set_etag).await {
                Ok(Some(prev)) => Ok(prev),
                _ => Err(e),
            }
        }
        other => other,
    }
}
