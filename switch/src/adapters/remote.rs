//! What every party reached over gRPC shares: how the channel to it is
//! made, and the rule that account numbers and amounts never cross a
//! network in clear by accident.

use std::time::Duration;

use tonic::transport::Channel;

/// A channel to the `party` ("bank", "biller") at `address`, connected
/// lazily: a party that is down fails calls, not the switch's start.
/// `https://` with `tls` (the party's CA, the switch's client certificate);
/// `http://` only on loopback unless `insecure`.
pub fn channel(
    party: &str,
    address: &str,
    timeout_ms: u64,
    tls: &proto::tls::ClientTls<'_>,
    insecure: bool,
) -> Result<Channel, String> {
    if !address.starts_with("https://") && !proto::tls::is_loopback(address) && !insecure {
        return Err(format!(
            "refusing to call the {party} at {address} in clear: use https:// with \
             tls_ca_file (and the switch's client certificate), or set insecure"
        ));
    }
    Ok(tls
        .endpoint(address)
        .map_err(|e| format!("{party} {address}: {e}"))?
        .connect_timeout(Duration::from_millis(timeout_ms.max(100)))
        .connect_lazy())
}
