//! What a [`Session`](crate::Session) reports: typed events, in the order
//! they happened.

use tern_proto::wire::{
    ConvSettingsPush, Edited, ErrorFrame, FriendPush, MsgView, Notify, PresencePush, ProfilePush,
    ReactionPush, Recalled, Receipt, RoomMsg, SyncAnswer, Typing,
};

/// One thing that happened on a session. Messages come once each (by
/// `msg_id`), in `seq` order within a conversation, gaps filled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Authenticated: the first connection (`resumed: false`) or a
    /// reconnection (`resumed: true`).
    Connected {
        user: String,
        device: String,
        resumed: bool,
    },
    /// The offline messages pushed at `auth` have all arrived.
    OfflineDone { count: u64, truncated: bool },
    /// The conversation list after each (re)connection (the session asks
    /// with `sync` once the offline messages are in): unread counts, last
    /// messages.
    Synced(SyncAnswer<'static>),
    /// A message, pushed or fetched to fill a gap. One's own messages show
    /// up here too when they were sent from another device, or came
    /// through a gap fill (compare `from`).
    Message(MsgView<'static>),
    /// A delivered or read receipt.
    Receipt(Receipt<'static>),
    /// A message was recalled.
    Recalled(Recalled<'static>),
    /// 5.1: a message was edited.
    Edited(Edited<'static>),
    /// 5.1: a reaction was added (`on`) or taken back.
    Reaction(ReactionPush<'static>),
    /// Someone is typing in a conversation.
    Typing(Typing<'static>),
    /// A friend came online or went away.
    Presence(PresencePush<'static>),
    /// A friendship changed: `status` is how the user now stands in this
    /// user's friend lists (`incoming`, `outgoing`, `friends`, `removed`).
    Friend(FriendPush<'static>),
    /// 5.3: a friend (or this user, from another device) changed its
    /// name or avatar.
    Profile(ProfilePush<'static>),
    /// 5.3: this user changed its settings of a conversation (from any of
    /// its devices, this one included).
    ConvSettings(ConvSettingsPush<'static>),
    /// A large group moved on while this device was in the background
    /// (`Session::set_active(false)`): fetch with `history`.
    Notify(Notify<'static>),
    /// A live-room message.
    RoomMessage(RoomMsg<'static>),
    /// An `error` frame that answers no request (a refused `ack` or
    /// `typing`).
    ServerError(ErrorFrame<'static>),
    /// The connection dropped: `code` is the WebSocket close code, if one
    /// came. With `reconnecting`, the session is dialling again (with
    /// backoff); without, it has ended (closed, token revoked: 4001,
    /// replaced by a newer login of the same device: 4009) and no event
    /// follows.
    Disconnected {
        code: Option<u16>,
        reason: String,
        reconnecting: bool,
    },
}
