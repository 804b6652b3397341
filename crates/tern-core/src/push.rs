//! What the node delivers: a frame ([`Outbound`], the item of each
//! connection's queue) and who gets it ([`Push`]). The hub delivers
//! pushes to this node's connections; the bus carries them to other nodes.

use bytes::Bytes;
use std::sync::Arc;

/// What a connection's writer receives.
#[derive(Debug, Clone, PartialEq)]
pub enum Outbound {
    /// A frame to write as it is.
    Frame(Bytes),
    /// A message push: written, then tracked until acknowledged and pushed
    /// again after the ack timeout. `frame` is shared by all recipients.
    Msg {
        conv: Arc<str>,
        seq: u64,
        frame: Bytes,
    },
    /// A frame the writer may merge with others that arrive within the
    /// storm window into one `{"type":"batch","frames":[...]}`.
    Batched(Bytes),
}

/// Who a push goes to.
#[derive(Debug, Clone, PartialEq)]
pub struct Push {
    pub users: Vec<Arc<str>>,
    /// A device to leave out: `(user, device)` of the sending connection.
    pub except: Option<(Arc<str>, Arc<str>)>,
    pub out: Outbound,
    /// What devices in the background (`state` inactive) get instead.
    pub inactive: Option<Outbound>,
}
