//! The request bodies tests and the bench send most: a plain message, an ack of a whole
//! lease, a claim of a batch under a lease of a given length; the call a dashboard login link
//! makes the login page send.

use peers_core::wire::{AckRequest, ClaimRequest, DashboardLogin, SendRequest};

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

/// A dashboard login link (`<broker>/login#code=…`, as `peers dashboard` prints it).
pub struct LoginLink {
    /// The broker's base URL.
    pub base: String,
    pub code: String,
}

impl LoginLink {
    pub fn parse(link: &str) -> LoginLink {
        let (base, code) = link
            .split_once("/login#code=")
            .unwrap_or_else(|| panic!("not a dashboard login link: {link}"));
        LoginLink {
            base: base.to_string(),
            code: code.to_string(),
        }
    }

    /// What the login page posts for it: the URL of `POST /v1/dashboard/login` and its body.
    pub fn login_call(&self) -> (String, DashboardLogin) {
        (
            format!("{}/v1/dashboard/login", self.base),
            DashboardLogin {
                code: self.code.clone(),
            },
        )
    }
}
