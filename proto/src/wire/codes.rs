//! Nacos error codes carried in `errorCode`/`resultCode` (spec §9.3).

/// `ErrorResponse` code: the server is starting.
pub const ERR_STARTING: i32 = 300;
/// `ErrorResponse` code: the connection is not registered (no ConnectionSetup yet, or evicted).
pub const ERR_UNREGISTERED: i32 = 301;
/// `ErrorResponse` code: no handler for the request type.
pub const ERR_NO_HANDLER: i32 = 302;
/// `ErrorResponse` code: the body could not be parsed.
pub const ERR_BAD_GATEWAY: i32 = 502;
/// Nacos' `OVER_THRESHOLD`: a request refused by a rate or capacity limit (Nacos' TPS control
/// answers it); SDKs surface it as an error and retry later.
pub const OVER_THRESHOLD: i32 = -400;
/// Nacos' INVALID_PARAM.
pub const INVALID_PARAM: i32 = 400;
/// Nacos' SERVER_ERROR.
pub const SERVER_ERROR: i32 = 500;
/// errorCode of a `ConfigQueryResponse` for an absent config.
pub const CONFIG_NOT_FOUND: i32 = 300;
