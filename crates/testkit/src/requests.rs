//! The request bodies tests and the bench send most: a plain message, an ack of a whole
//! lease, a claim of a batch under a lease of a given length.

use peers_core::wire::{AckRequest, ClaimRequest, SendRequest};

/// A new message (not a reply) to `to`.
pub fn send_req(to: impl Into<String>, message: impl Into<String>) -> SendRequest {
    SendRequest {
        tags: vec![],
        to: to.into(),
        message: message.into(),
        reply_to: None,
        scope: None,
    }
}

/// An ack of every message of the lease `lease_id`, shown `via`.
pub fn ack_req(lease_id: impl Into<String>, via: &str) -> AckRequest {
    AckRequest {
        lease_id: lease_id.into(),
        via: via.into(),
        message_ids: None,
    }
}

/// A claim (not automatic) of up to `max` messages, leased for `lease_ms`.
pub fn claim_req(max: u32, lease_ms: u64) -> ClaimRequest {
    ClaimRequest {
        max: Some(max),
        lease_ms: Some(lease_ms),
        automatic: false,
    }
}
